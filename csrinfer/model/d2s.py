"""Depth-to-Space, D2S (paper §III-B, Fig. 3).

PixelShuffle(r=2) moves channels to space (W -> W/4 channels, 2x resolution, no parameters),
then a depthwise-separable convolution mixes space: depthwise 3x3 (+bias) on the W/4 channels
and pointwise 1x1 back to the neck width. The first three steps — pixel shuffle, depthwise
3x3, bias — are one op, ``d2s_fused`` (design.md §3): its reference here is plain PyTorch and
the ground truth; the CUDA kernel (``csrinfer.plugins``) and the TensorRT plugin compute the
same function without writing the shuffled tensor.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

SCALE = 2  # r; the paper uses 2 everywhere and the fused kernel is written for it


def d2s_fused_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """PixelShuffle(2) -> depthwise 3x3 (zero padding 1) -> +bias.

    Args:
        x: [N, C, H, W], C divisible by 4.
        weight: [C/4, 1, 3, 3] depthwise filters.
        bias: [C/4].
    Returns:
        [N, C/4, 2H, 2W], same dtype as x.
    """
    return F.conv2d(F.pixel_shuffle(x, SCALE), weight, bias, padding=1, groups=weight.shape[0])


class DepthToSpace(nn.Module):
    """D2S block: fused pixel-shuffle + depthwise 3x3 + bias, then pointwise 1x1.

    Args:
        in_channels: channels before the shuffle (divisible by 4).
        out_channels: channels after the pointwise conv (the neck width).
        fused_op: replaces ``d2s_fused_reference`` (same signature); the GPU fast path sets it
            (``enable_fused_d2s``). ``None`` uses the reference. (The plugin graph is not made
            here: ``export/plugin_graph.py`` rewrites the exported ONNX.)
    """

    def __init__(self, in_channels: int, out_channels: int,
                 fused_op: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None):
        super().__init__()
        if in_channels % (SCALE * SCALE):
            raise ValueError(f"D2S needs channels divisible by {SCALE * SCALE}, got {in_channels}")
        mid = in_channels // (SCALE * SCALE)
        self.depthwise = nn.Conv2d(mid, mid, 3, padding=1, groups=mid)
        self.pointwise = nn.Conv2d(mid, out_channels, 1)
        self.fused_op = fused_op

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, in_channels, H, W] -> [N, out_channels, 2H, 2W]."""
        op = self.fused_op or d2s_fused_reference
        return self.pointwise(op(x, self.depthwise.weight, self.depthwise.bias))
