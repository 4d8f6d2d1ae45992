"""The neck (paper §III, Fig. 1; design.md §1): laterals, CSR, D2S and the mean fusion, and the
FPN baseline of Table II, each against a hand computation with the module's own weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from csrinfer.model.csr import CrossScaleReweighting
from csrinfer.model.neck import Neck

IN_CHANNELS = (6, 10, 12)
WIDTH = 8  # divisible by 4 for the pixel shuffle


def random_neck(csr: bool, d2s: bool, seed: int = 0) -> Neck:
    torch.manual_seed(seed)
    reweight = CrossScaleReweighting(IN_CHANNELS, channels=5, out_channels=WIDTH) if csr else None
    neck = Neck(IN_CHANNELS, WIDTH, csr=reweight, d2s=d2s).double()
    with torch.no_grad():  # non-zero biases everywhere, so a dropped bias shows
        for p in neck.parameters():
            p.normal_(0.0, 0.5)
    return neck


def random_features(seed: int = 1, batch: int = 2, h5: int = 2, w5: int = 3) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, c, h5 * s, w5 * s, generator=g, dtype=torch.float64)
            for c, s in zip(IN_CHANNELS, (4, 2, 1))]


def lateral(conv: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, conv.weight, conv.bias)


def csr_by_hand(csr: CrossScaleReweighting, feats, top):
    """R = sigmoid(W2 ReLU(W1 [W0,i GAP(Ci)])) (Eq. 1-4), O = R * top (Eq. 5)."""
    pooled = [F.conv2d(f.mean(dim=(2, 3), keepdim=True), r.weight, r.bias) for r, f in zip(csr.reduce, feats)]
    h = torch.cat(pooled, dim=1)
    r = torch.sigmoid(F.conv2d(torch.relu(F.conv2d(h, csr.fc1.weight, csr.fc1.bias)), csr.fc2.weight, csr.fc2.bias))
    return top * r


def d2s_by_hand(block, x: torch.Tensor) -> torch.Tensor:
    """Pixel shuffle written as an index map (channel 4c + 2i + j -> (c, 2y+i, 2x+j)), then
    depthwise 3x3 + bias and pointwise 1x1."""
    n, c, h, w = x.shape
    shuffled = x.reshape(n, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(n, c // 4, 2 * h, 2 * w)
    dw = block.depthwise
    mixed = F.conv2d(shuffled, dw.weight, dw.bias, padding=1, groups=c // 4)
    return F.conv2d(mixed, block.pointwise.weight, block.pointwise.bias)


def nearest_up2(x: torch.Tensor) -> torch.Tensor:
    return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


@pytest.mark.parametrize("csr", [True, False])
def test_d2s_fusion_is_the_mean_of_upsampled_and_lateral(csr):
    neck = random_neck(csr=csr, d2s=True)
    feats = random_features()
    l3, l4, l5 = (lateral(conv, f) for conv, f in zip(neck.laterals.convs, feats))
    top = csr_by_hand(neck.csr, feats, l5) if csr else l5
    f4 = (d2s_by_hand(neck.d2s[0], top) + l4) / 2
    want = (d2s_by_hand(neck.d2s[1], f4) + l3) / 2
    with torch.no_grad():
        got = neck(feats)
    assert got.shape == (2, WIDTH, 8, 12)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("csr", [False, True])
def test_fpn_baseline_is_nearest_upsampling_and_sum(csr):
    # d2s off: Table II's baseline pathway (with CSR on top when csr is on).
    neck = random_neck(csr=csr, d2s=False, seed=2)
    assert neck.d2s is None
    feats = random_features(seed=3)
    l3, l4, l5 = (lateral(conv, f) for conv, f in zip(neck.laterals.convs, feats))
    top = csr_by_hand(neck.csr, feats, l5) if csr else l5
    want = nearest_up2(nearest_up2(top) + l4) + l3
    with torch.no_grad():
        got = neck(feats)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)

