"""The assembled network: size (Table I), shapes, determinism, gradients."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from csrinfer.config import Config, load_config
from csrinfer.model import build_model
from csrinfer.model.complexity import count_parameters
from csrinfer.letterbox import PAD_VALUE_RGB, stack_batch

PAPER_PARAMS = 32.13e6  # Table I, "Ours"
SMALL_CONFIG = Path(__file__).resolve().parents[2] / "models" / "csr_d2s_r18_small.yaml"


def test_paper_config_has_the_papers_parameter_count(paper_cfg):
    params = count_parameters(build_model(paper_cfg))
    print(f"\nparameters: total {params['total'] / 1e6:.2f}M (paper 32.13M), backbone "
          f"{params['backbone'] / 1e6:.2f}M, neck {params['neck'] / 1e6:.2f}M, head {params['head'] / 1e6:.2f}M")
    assert abs(params["total"] - PAPER_PARAMS) / PAPER_PARAMS <= 0.03
    assert params["total"] == params["backbone"] + params["neck"] + params["head"]


def test_ablation_switches_change_the_neck_only():
    base = Config()
    sizes = {}
    for csr in (False, True):
        for d2s in (False, True):
            cfg = Config()
            cfg.model.csr, cfg.model.d2s = csr, d2s
            sizes[csr, d2s] = count_parameters(build_model(cfg))
    assert sizes[False, False]["head"] == sizes[True, True]["head"] == count_parameters(build_model(base))["head"]
    assert sizes[True, False]["neck"] > sizes[False, False]["neck"]  # CSR adds weights
    assert sizes[False, True]["neck"] > sizes[False, False]["neck"]  # D2S adds depthwise + pointwise


def test_csr_width_grows_the_model(paper_cfg):
    totals = []
    for width in (128, 256, 512, 1024):
        cfg = Config()
        cfg.model.csr_channels = width
        totals.append(count_parameters(build_model(cfg))["total"])
    assert totals == sorted(totals) and len(set(totals)) == 4


@pytest.mark.parametrize("height,width", [(320, 320), (256, 416), (250, 333), (97, 161)])
def test_forward_shapes_after_padding(small_cfg, small_model, height, width):
    images = torch.as_tensor(stack_batch(list(np.random.default_rng(0).uniform(0, 255, (2, 3, height, width)))))
    ph, pw = images.shape[-2:]
    assert ph % 32 == 0 and pw % 32 == 0 and ph - height < 32 and pw - width < 32
    with torch.no_grad():
        out = small_model(images)
        scores, labels, masks = small_model.predict(images)
    m = small_cfg.model
    for s, cate, kern in zip(m.num_grids, out.cate_preds, out.kernel_preds):
        assert cate.shape == (2, m.num_classes, s, s)
        assert kern.shape == (2, m.kernel_dim, s, s)
    assert out.mask_feats.shape == (2, m.kernel_dim, ph // 8, pw // 8)
    k = small_cfg.inference.max_per_img
    assert scores.shape == (2, k) and labels.shape == (2, k) and masks.shape == (2, k, ph // 8, pw // 8)
    assert labels.dtype == torch.int64


def test_eval_mode_is_deterministic(small_model):
    images = torch.rand(1, 3, 256, 320) * 255
    with torch.no_grad():
        first = small_model.predict(images)
        second = small_model.predict(images)
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    assert (first[0] > 0).sum() > 0, "the confident model should produce instances"


def test_every_trainable_parameter_gets_a_gradient(small_cfg):
    torch.manual_seed(0)
    model = build_model(small_cfg).train()
    out = model(torch.rand(2, 3, 256, 256) * 255)
    loss = sum(p.square().mean() for p in out.cate_preds) + sum(p.square().mean() for p in out.kernel_preds)
    loss = loss + out.mask_feats.square().mean()
    loss.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert len(trainable) > 0
    missing = [n for n, p in trainable if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert missing == []


def test_frozen_stages_and_norm_eval(small_cfg):
    cfg = copy.deepcopy(small_cfg)  # the small config trains its whole backbone; the paper's freezes
    cfg.model.frozen_stages, cfg.model.norm_eval = 1, True
    model = build_model(cfg).train()
    assert not any(p.requires_grad for p in model.backbone.stem.parameters())
    assert not any(p.requires_grad for p in model.backbone.layer1.parameters())
    assert all(p.requires_grad for p in model.backbone.layer2.parameters())
    assert all(not m.training for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert model.head.training and model.neck.training


def captured_backbone_input(model, images):
    seen = []
    handle = model.backbone.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    try:
        with torch.no_grad():
            model(images)
    finally:
        handle.remove()
    assert len(seen) == 1
    return seen[0]


def test_input_is_normalised_with_imagenet_mean_and_std_in_rgb_order():
    torch.manual_seed(0)
    model = build_model(load_config(SMALL_CONFIG)).eval()
    g = torch.Generator().manual_seed(7)
    images = torch.rand(2, 3, 64, 96, generator=g) * 255  # channel 0 is R, as design.md §2 fixes
    got = captured_backbone_input(model, images)
    mean = np.array([123.675, 116.28, 103.53])  # R, G, B (ImageNet, 0-255)
    std = np.array([58.395, 57.12, 57.375])
    want = (images.double().numpy() - mean[None, :, None, None]) / std[None, :, None, None]
    assert got.shape == images.shape
    np.testing.assert_allclose(got.double().numpy(), want, rtol=1e-5, atol=1e-5)


def test_pad_value_reaches_the_backbone_as_exact_zeros():
    torch.manual_seed(0)
    model = build_model(load_config(SMALL_CONFIG)).eval()
    images = torch.tensor(PAD_VALUE_RGB, dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, 64, 64).contiguous()
    got = captured_backbone_input(model, images)
    assert torch.equal(got, torch.zeros_like(got))
