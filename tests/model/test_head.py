"""The SOLOv2-style head (paper §III, Fig. 1; design.md §1): CoordConv channels, the per-grid
kernel and category branches, the mask branch and the dynamic 1x1 convolution, each against a
hand computation with the module's own weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from csrinfer.model.head import SOLOv2Head, dynamic_mask_logits, with_coords

GROUPS = 2


@pytest.mark.parametrize("h,w", [(3, 7), (6, 4), (1, 5)])
def test_with_coords_appends_x_then_y_in_minus_one_to_one(h, w):
    g = torch.Generator().manual_seed(h * 10 + w)
    x = torch.randn(2, 3, h, w, generator=g, dtype=torch.float64)
    out = with_coords(x)
    assert out.shape == (2, 5, h, w) and out.dtype == x.dtype
    assert torch.equal(out[:, :3], x)
    want_x = np.broadcast_to(np.linspace(-1.0, 1.0, w)[None, :], (h, w))  # varies along each row
    want_y = np.broadcast_to(np.linspace(-1.0, 1.0, h)[:, None], (h, w))  # varies down each column
    if h == 1:
        want_y = np.full((h, w), -1.0)  # linspace(-1, 1, 1) is [-1]
    for b in range(2):
        np.testing.assert_allclose(out[b, 3].numpy(), want_x, rtol=0, atol=1e-12)
        np.testing.assert_allclose(out[b, 4].numpy(), want_y, rtol=0, atol=1e-12)


def test_dynamic_mask_logits_is_a_per_image_dot_product():
    g = torch.Generator().manual_seed(0)
    kernels = torch.randn(2, 3, 5, generator=g, dtype=torch.float64)
    feats = torch.randn(2, 5, 4, 6, generator=g, dtype=torch.float64)
    got = dynamic_mask_logits(kernels, feats)
    want = np.zeros((2, 3, 4, 6))
    for b in range(2):
        for n in range(3):
            for e in range(5):
                want[b, n] += kernels[b, n, e].item() * feats[b, e].numpy()
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)


def tiny_head(num_grids=(5, 3)) -> SOLOv2Head:
    torch.manual_seed(0)
    head = SOLOv2Head(in_channels=8, num_classes=3, channels=6, num_convs=2, kernel_dim=4, mask_channels=4,
                      num_grids=num_grids, norm_groups=GROUPS).double()
    with torch.no_grad():  # random, non-trivial weights everywhere (GN affine and biases too)
        for p in head.parameters():
            p.normal_(0.0, 0.5)
    return head.eval()


def tower_by_hand(seq: torch.nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Each block: conv (no bias, 'same' padding) -> GroupNorm(GROUPS) -> ReLU."""
    for conv, gn, _ in seq:
        x = F.conv2d(x, conv.weight, None, padding=conv.weight.shape[-1] // 2)
        x = torch.relu(F.group_norm(x, GROUPS, gn.weight, gn.bias, gn.eps))
    return x


def coords_by_hand(x: torch.Tensor) -> torch.Tensor:
    b, _, h, w = x.shape
    gx = torch.linspace(-1, 1, w, dtype=x.dtype).expand(h, w)
    gy = torch.linspace(-1, 1, h, dtype=x.dtype)[:, None].expand(h, w)
    return torch.cat([x, torch.stack([gx, gy]).expand(b, 2, h, w)], dim=1)


def test_forward_equals_a_hand_computation_per_grid():
    head = tiny_head()
    g = torch.Generator().manual_seed(1)
    feature = torch.randn(2, 8, 6, 10, generator=g, dtype=torch.float64)
    with torch.no_grad():
        out = head(feature)
    assert len(out.cate_preds) == len(out.kernel_preds) == 2
    for s, cate, kern in zip((5, 3), out.cate_preds, out.kernel_preds):
        # Each grid reads F resized (bilinear, half-pixel centres) to S x S. The kernel branch
        # reads CoordConv channels made at F's resolution and resized with it (mmdetection's
        # order); the category branch sees F alone.
        resized = F.interpolate(feature, size=(s, s), mode="bilinear", align_corners=False)
        coords = F.interpolate(coords_by_hand(feature)[:, -2:], size=(s, s), mode="bilinear", align_corners=False)
        k = tower_by_hand(head.kernel_convs, torch.cat([resized, coords], dim=1))
        want_kern = F.conv2d(k, head.kernel_out.weight, head.kernel_out.bias, padding=1)
        c = tower_by_hand(head.cate_convs, resized)
        want_cate = F.conv2d(c, head.cate_out.weight, head.cate_out.bias, padding=1)
        assert kern.shape == (2, 4, s, s) and cate.shape == (2, 3, s, s)
        torch.testing.assert_close(kern, want_kern, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(cate, want_cate, rtol=1e-10, atol=1e-10)
    # Mask branch on F at full resolution: CoordConv, the tower, then 1x1 conv + GN + ReLU to E.
    m = tower_by_hand(head.mask_branch.convs, coords_by_hand(feature))
    conv, gn, _ = head.mask_branch.out
    want_mask = torch.relu(F.group_norm(F.conv2d(m, conv.weight), GROUPS, gn.weight, gn.bias, gn.eps))
    assert out.mask_feats.shape == (2, 4, 6, 10)
    torch.testing.assert_close(out.mask_feats, want_mask, rtol=1e-10, atol=1e-10)


def test_the_kernel_branchs_coordinates_are_resized_with_the_feature():
    # F of width 10 resized to 5 columns: column j averages F's columns 2j and 2j + 1, whose x
    # coordinates are -1 + 2k/9, so the edge columns read -1 + 1/9 and 1 - 1/9, not -1 and 1.
    head = tiny_head(num_grids=(5,))
    seen = {}
    head.kernel_convs[0].register_forward_pre_hook(lambda _, args: seen.setdefault("x", args[0]))
    with torch.no_grad():
        head(torch.zeros(1, 8, 6, 10, dtype=torch.float64))
    x_coord = seen["x"][0, 8]
    torch.testing.assert_close(x_coord[0], torch.tensor([-8 / 9, -4 / 9, 0.0, 4 / 9, 8 / 9], dtype=torch.float64))


def test_one_output_per_grid_in_the_order_given():
    head = tiny_head(num_grids=(7, 4, 2))
    with torch.no_grad():
        out = head(torch.randn(1, 8, 8, 8, dtype=torch.float64))
    assert [p.shape[-2:] for p in out.cate_preds] == [(7, 7), (4, 4), (2, 2)]
    assert [p.shape[-2:] for p in out.kernel_preds] == [(7, 7), (4, 4), (2, 2)]


def test_category_prior_starts_every_cell_at_one_percent():
    head = SOLOv2Head(in_channels=8, num_classes=3, channels=8, num_convs=1, kernel_dim=4, mask_channels=4,
                      num_grids=(3,), norm_groups=GROUPS)
    torch.testing.assert_close(head.cate_out.bias, torch.full((3,), -math.log(99.0)))
    torch.testing.assert_close(torch.sigmoid(head.cate_out.bias), torch.full((3,), 0.01))
