"""``count_flops`` and ``count_bytes``: counted on the meta device, against real runs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from csrinfer.model.complexity import count_bytes, count_flops


@pytest.fixture()
def model(small_cfg):
    from csrinfer.model import build_model
    from tests.conftest import make_confident

    torch.manual_seed(0)
    return make_confident(build_model(small_cfg), nms_pre=150).eval()


def test_layer_outputs_match_forward_hooks(model):
    """Two independent counts of the same thing: dispatched aten ops on "meta" tensors (the
    function) and module hooks plus the two known matrix products on a real CPU run (here)."""
    from csrinfer.model.d2s import DepthToSpace

    elements = []
    hooks = [m.register_forward_hook(lambda m, i, o: elements.append(o.numel()))
             for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear, nn.MaxPool2d))]
    # D2S runs its depthwise conv functionally (on the shuffled input, as many values as its input)
    hooks += [m.register_forward_pre_hook(lambda m, i: elements.append(i[0].numel()))
              for m in model.modules() if isinstance(m, DepthToSpace)]
    h, w, batch = 64, 96, 2
    images = torch.rand(batch, 3, h, w) * 255
    try:
        with torch.no_grad():
            scores, labels, masks = model.predict(images)
    finally:
        for hook in hooks:
            hook.remove()
    n, classes = model.inference["nms_pre"], model.head.num_classes
    # post-processing: the local-maximum max pooling of each grid's scores (kernel 2, padding 1:
    # (S + 1)^2 per class), the dynamic mask matmul [B, n, H/8 * W/8] and Matrix NMS's
    # intersections [B, n, n]
    elements += [batch * classes * (s + 1) ** 2 for s in model.head.num_grids]
    elements += [batch * n * (h // 8) * (w // 8), batch * n * n]
    got = count_bytes(model, h, w, batch, bytes_per_element=2)
    assert got["activations"] == 2 * 2 * sum(elements)
    weights = sum(t.numel() for t in (*model.parameters(), *model.buffers()) if t.is_floating_point())
    assert got["weights"] == 2 * weights
    assert got["input"] == images.numel() * 4
    assert got["outputs"] == scores.numel() * 4 + labels.numel() * 8 + masks.numel() * 4
    assert got["total"] == got["weights"] + got["input"] + got["outputs"] + got["activations"]
    assert next(model.parameters()).device.type == "cpu"  # the model itself was not moved to meta


def test_sizes_are_padded_and_batch_scales_activations(model):
    one, two = count_bytes(model, 60, 90), count_bytes(model, 64, 96, batch=2)
    assert (one["height"], one["width"]) == (64, 96)
    assert two["activations"] == 2 * one["activations"] and two["weights"] == one["weights"]


def test_flops_on_the_meta_device_equal_a_real_run_and_any_size_is_free(model):
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as real:
        model(torch.rand(1, 3, 96, 128))
    assert count_flops(model, 96, 128)["network"] == real.get_total_flops()
    huge = count_flops(model, 100_000, 100_000)  # 120 GB of input were it real
    assert huge["network"] > 500 * real.get_total_flops()
    assert next(model.parameters()).device.type == "cpu"  # the caller's model is not moved
