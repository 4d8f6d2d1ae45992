"""D2S (paper §III-B): the fused op's reference is PixelShuffle then a depthwise 3x3 + bias."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from csrinfer.model.d2s import DepthToSpace, d2s_fused_reference


def independent_d2s(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Pixel shuffle by the index map, then a direct 3x3 depthwise sum with zero borders."""
    n, c, h, w = x.shape
    co = c // 4
    shuffled = np.zeros((n, co, 2 * h, 2 * w), dtype=np.float64)
    for ch in range(co):
        for i in range(2):
            for j in range(2):
                shuffled[:, ch, i::2, j::2] = x[:, ch * 4 + i * 2 + j]
    padded = np.pad(shuffled, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros_like(shuffled)
    for dy in range(3):
        for dx in range(3):
            out += padded[:, :, dy:dy + 2 * h, dx:dx + 2 * w] * weight[None, :, 0, dy, dx, None, None]
    return out + bias[None, :, None, None]


@pytest.mark.parametrize("shape", [(1, 8, 3, 5), (2, 16, 7, 4), (3, 4, 1, 1)])
def test_reference_equals_pixel_shuffle_then_depthwise(shape):
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    weight = torch.randn(shape[1] // 4, 1, 3, 3, generator=g, dtype=torch.float64)
    bias = torch.randn(shape[1] // 4, generator=g, dtype=torch.float64)
    got = d2s_fused_reference(x, weight, bias).numpy()
    want = independent_d2s(x.numpy(), weight.numpy(), bias.numpy())
    assert got.shape == (shape[0], shape[1] // 4, 2 * shape[2], 2 * shape[3])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_block_doubles_resolution_and_restores_width():
    block = DepthToSpace(32, 32)
    y = block(torch.randn(2, 32, 5, 6))
    assert y.shape == (2, 32, 10, 12)
    assert block.depthwise.weight.shape == (8, 1, 3, 3) and block.depthwise.bias.shape == (8,)


def test_block_uses_a_replacement_fused_op():
    calls = []

    def spy(x, w, b):
        calls.append(x.shape)
        return d2s_fused_reference(x, w, b)

    block = DepthToSpace(16, 16, fused_op=spy)
    x = torch.randn(1, 16, 4, 4)
    expected = DepthToSpace(16, 16)
    expected.load_state_dict(block.state_dict())
    torch.testing.assert_close(block(x), expected(x))
    assert calls == [torch.Size([1, 16, 4, 4])]


def test_channels_must_divide_by_four():
    with pytest.raises(ValueError, match="divisible by 4"):
        DepthToSpace(30, 30)
