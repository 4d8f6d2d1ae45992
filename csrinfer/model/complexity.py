"""Model size and compute: parameters per part (paper Table I's #params) and FLOPs."""

from __future__ import annotations

import copy

import torch
from torch.utils.flop_counter import FlopCounterMode

from csrinfer.model.network import CSRD2SNet
from csrinfer.model.postprocess import postprocess


def count_parameters(model: CSRD2SNet) -> dict[str, int]:
    """Parameters of backbone, neck, head and total (all parameters, frozen ones included)."""
    parts = {name: sum(p.numel() for p in getattr(model, name).parameters()) for name in ("backbone", "neck", "head")}
    parts["total"] = sum(p.numel() for p in model.parameters())
    return parts


@torch.no_grad()
def count_flops(model: CSRD2SNet, height: int, width: int) -> dict[str, int]:
    """FLOPs (2 per multiply-add) of one image of H x W (padded to a multiple of 32).

    Returns ``network`` (backbone + neck + head, the figure papers quote as FLOPs) and
    ``postprocess`` (the dynamic mask matmul and Matrix NMS inside the graph). Shapes only, as
    :func:`count_bytes`: a copy runs on the "meta" device, so any size costs no memory.
    """
    h, w = (-(-height // 32) * 32), (-(-width // 32) * 32)
    meta = _meta_copy(model)
    with FlopCounterMode(display=False) as net_counter:
        out = meta(torch.zeros(1, 3, h, w, device="meta"))
    with FlopCounterMode(display=False) as post_counter:
        postprocess(out.cate_preds, out.kernel_preds, out.mask_feats, meta.min_mask_areas, mask_stride=meta.stride,
                    **meta.inference)
    return {"network": net_counter.get_total_flops(), "postprocess": post_counter.get_total_flops(),
            "height": h, "width": w}


def _meta_copy(model: CSRD2SNet) -> CSRD2SNet:
    return copy.deepcopy(model).to("meta").eval()


# Ops whose outputs an inference engine must write to memory and read back (the layers);
# normalisation, activations, residual sums, pixel shuffle and resizes fuse into them.
_MATERIALISED = ("aten.convolution", "aten.mm", "aten.bmm", "aten.addmm", "aten.baddbmm",
                 "aten.max_pool2d_with_indices")


@torch.no_grad()
def count_bytes(model: CSRD2SNet, height: int, width: int, batch: int = 1, bytes_per_element: int = 4) -> dict[str, int]:
    """Bytes one forward pass (network + in-graph post-processing, ``model.predict``) of ``batch``
    images of H x W (padded to a multiple of 32) must move at least once: the memory floor.

    - ``weights``: every parameter and buffer, read once (``bytes_per_element`` each);
    - ``input``: the float32 [B, 3, H, W] images, read once;
    - ``outputs``: scores (float32), labels (int64) and mask probabilities (float32), written once;
    - ``activations``: the output of every layer — convolution, matrix product, max pooling —
      written once and read once (2 x its size, ``bytes_per_element`` per value). Normalisation,
      activation functions, residual sums, pixel shuffle and resizes are taken as fused into
      the layer that produces or consumes them, as an inference engine fuses them.

    ``total`` is their sum. Shapes only: the model runs on PyTorch's "meta" device (a copy),
    so this takes a second even for the paper model at 1344x800.
    """
    from torch.utils._python_dispatch import TorchDispatchMode

    class Recorder(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.elements = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if str(func.overloadpacket) in _MATERIALISED:
                first = out[0] if isinstance(out, (tuple, list)) else out
                self.elements += first.numel()
            return out

    h, w = (-(-height // 32) * 32), (-(-width // 32) * 32)
    meta = _meta_copy(model)
    weights = sum(t.numel() for t in (*meta.parameters(), *meta.buffers()) if t.is_floating_point())
    recorder = Recorder()
    with recorder:
        scores, labels, masks = meta.predict(torch.zeros(batch, 3, h, w, device="meta"))
    outputs = scores.numel() * 4 + labels.numel() * 8 + masks.numel() * 4
    parts = {"weights": weights * bytes_per_element, "input": batch * 3 * h * w * 4, "outputs": outputs,
             "activations": 2 * recorder.elements * bytes_per_element}
    return {**parts, "total": sum(parts.values()), "height": h, "width": w, "batch": batch}
