"""Model size and compute: parameters per part (paper Table I's #params) and FLOPs."""

from __future__ import annotations

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
    ``postprocess`` (the dynamic mask matmul and Matrix NMS inside the graph).
    """
    h, w = (-(-height // 32) * 32), (-(-width // 32) * 32)
    param = next(model.parameters())
    images = torch.zeros(1, 3, h, w, device=param.device, dtype=param.dtype)
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as net_counter:
            out = model(images)
        with FlopCounterMode(display=False) as post_counter:
            postprocess(out.cate_preds, out.kernel_preds, out.mask_feats, model.grid_strides, **model.inference)
    finally:
        model.train(was_training)
    return {"network": net_counter.get_total_flops(), "postprocess": post_counter.get_total_flops(),
            "height": h, "width": w}
