"""CSR (paper §III-A, Eq. 1-5): weights in (0, 1) from all levels, scaling C5 per channel."""

from __future__ import annotations

import torch

from csrinfer.model.csr import CrossScaleReweighting


def features(batch=2, generator=None):
    return [torch.randn(batch, c, s, s, generator=generator) for c, s in ((16, 16), (32, 8), (64, 4))]


def test_weights_lie_strictly_between_zero_and_one():
    g = torch.Generator().manual_seed(1)
    csr = CrossScaleReweighting((16, 32, 64), channels=24, out_channels=40)
    r = csr.weights(features(generator=g))
    assert r.shape == (2, 40, 1, 1)
    assert (r > 0).all() and (r < 1).all()


def test_output_is_c5_lateral_scaled_per_channel():
    g = torch.Generator().manual_seed(2)
    csr = CrossScaleReweighting((16, 32, 64), channels=24, out_channels=40)
    feats = features(generator=g)
    top = torch.randn(2, 40, 4, 4, generator=g)
    out = csr(feats, top)
    ratio = out / top
    # One factor per (image, channel), constant over space, equal to Eq. 1's R.
    torch.testing.assert_close(ratio, ratio[:, :, :1, :1].expand_as(ratio), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ratio[:, :, 0, 0], csr.weights(feats)[:, :, 0, 0], rtol=1e-4, atol=1e-5)


def test_weights_depend_on_every_level():
    g = torch.Generator().manual_seed(3)
    csr = CrossScaleReweighting((16, 32, 64), channels=24, out_channels=40)
    feats = features(generator=g)
    base = csr.weights(feats)
    for level in range(3):
        changed = list(feats)
        changed[level] = changed[level] + 1.0
        assert not torch.allclose(csr.weights(changed), base), f"C{level + 3} does not reach R"


def test_matches_equations_computed_by_hand():
    g = torch.Generator().manual_seed(4)
    csr = CrossScaleReweighting((16, 32, 64), channels=24, out_channels=40).double()
    feats = [f.double() for f in features(batch=1, generator=g)]
    pooled = [f.mean(dim=(2, 3))[0] for f in feats]  # Eq. 3
    fs = [conv.weight[:, :, 0, 0] @ p + conv.bias for conv, p in zip(csr.reduce, pooled)]  # Eq. 4
    h = torch.cat(fs)  # Eq. 2
    hidden = torch.relu(csr.fc1.weight[:, :, 0, 0] @ h + csr.fc1.bias)
    r = torch.sigmoid(csr.fc2.weight[:, :, 0, 0] @ hidden + csr.fc2.bias)  # Eq. 1
    torch.testing.assert_close(csr.weights(feats)[0, :, 0, 0], r)
