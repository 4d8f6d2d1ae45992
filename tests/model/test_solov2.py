"""The SOLOv2 family (model.arch: solov2): the parts against independent references.

Agreement with mmdetection's own outputs is tested in tests/convert/test_mmdet.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from csrinfer.config import config_from_dict, load_config
from csrinfer.errors import ConfigError
from csrinfer.model import CSRD2SNet, SOLOv2, build_model
from csrinfer.model.fpn import FPN
from csrinfer.model.resnet import ResNet
from csrinfer.model.solov2 import points_nms_probabilities
from csrinfer.model.solov2_head import grid_inputs

ROOT = Path(__file__).resolve().parents[2]


def test_r50_config_has_mmdetections_parameter_count():
    shapes = json.loads((ROOT / "tests/fixtures/mmdet_solov2/r50_keys.json").read_text())
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    reference = sum(torch.Size(s).numel() for k, s in shapes.items() if not k.endswith(buffers))
    model = build_model(load_config(ROOT / "models/solov2_r50_fpn_coco.yaml"))
    assert isinstance(model, SOLOv2) and model.stride == 4
    assert sum(p.numel() for p in model.parameters()) == reference


def test_csr_d2s_configs_still_build_the_paper_network():
    model = build_model(load_config(ROOT / "models/csr_d2s_r18_small.yaml"))
    assert type(model) is CSRD2SNet and model.stride == 8


def test_unknown_arch_and_fpn_extra_are_refused():
    with pytest.raises(ConfigError, match="model.arch must be one of"):
        config_from_dict({"model": {"arch": "solo"}})
    with pytest.raises(ConfigError, match="model.fpn_extra"):
        config_from_dict({"model": {"arch": "solov2", "fpn_extra": "conv"}})


def test_resnet_levels_and_widths():
    net = ResNet(depth=18, base_channels=8, frozen_stages=0).eval()
    outs = net(torch.rand(1, 3, 64, 96))
    assert [o.shape[1] for o in outs] == [8, 16, 32, 64] == net.out_channels
    assert [o.shape[-2:] for o in outs] == [(16, 24), (8, 12), (4, 6), (2, 3)]


def test_fpn_p6_is_every_other_pixel_of_p5_and_extra_convs_read_their_source():
    torch.manual_seed(0)
    feats = [torch.rand(1, c, 32 // 2 ** i, 48 // 2 ** i) for i, c in enumerate((4, 8, 16, 32))]
    outs = FPN([4, 8, 16, 32], 8).eval()(feats)
    assert len(outs) == 5
    torch.testing.assert_close(outs[4], outs[3][:, :, ::2, ::2])
    on_input = FPN([4, 8, 16, 32], 8, extra="on_input").eval()
    p6 = on_input(feats)[4]
    torch.testing.assert_close(p6, on_input.extra_convs[0](feats[3]))
    # top-down: P4 = output conv of (lateral C4 + nearest-upsampled lateral C5)
    fpn = FPN([4, 8, 16, 32], 8).eval()
    lat5, lat4 = fpn.lateral_convs[3](feats[3]), fpn.lateral_convs[2](feats[2])
    expected = fpn.output_convs[2](lat4 + lat5.repeat_interleave(2, -1).repeat_interleave(2, -2))
    torch.testing.assert_close(fpn(feats)[2], expected)


def test_grid_inputs_halve_p2_and_bring_p6_to_p5():
    levels = [torch.rand(1, 2, 32 // 2 ** i, 32 // 2 ** i) for i in range(4)] + [torch.rand(1, 2, 2, 2)]
    out = grid_inputs(levels)
    assert [o.shape[-1] for o in out] == [16, 16, 8, 4, 4]
    torch.testing.assert_close(out[0], F.avg_pool2d(levels[0], 2))  # bilinear x0.5 of an even map
    assert out[2] is levels[2]


def test_local_maximum_on_probabilities_keeps_ties():
    logits = torch.tensor([[[[30.0, 40.0], [0.0, -1.0]]]])  # sigmoid(30) == sigmoid(40) in float32
    probs = points_nms_probabilities(logits)
    assert probs[0, 0, 0, 0] > 0 and probs[0, 0, 0, 1] > 0  # a tie in probability: both stay
    assert probs[0, 0, 1, 1] == 0  # beaten by its upper-left neighbours
