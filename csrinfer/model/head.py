"""The segmentation head (paper §III, Fig. 1): SOLOv2-style kernel, category and mask branches.

All branches read the single stride-8 feature F of the neck. For each grid S of
``num_grids`` the kernel and category branches run on F resized to S x S, giving per-cell class
logits and E-dimensional dynamic kernels. The kernel branch also reads two CoordConv channels,
appended to F *before* the resize as mmdetection's SOLOv2 does (so a grid's edge cells see
about +-0.98, not +-1); the category branch reads the resized F without them.
The mask branch turns F into E mask-feature maps; an instance's mask logits are its kernel
dotted with them (a 1x1 dynamic convolution, i.e. a matmul; Fig. 1's ⊛).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class HeadOutputs(NamedTuple):
    """Raw head outputs, one entry per grid.

    cate_preds: list of float [B, num_classes, S, S] logits.
    kernel_preds: list of float [B, E, S, S] dynamic kernels.
    mask_feats: float [B, E, H/8, W/8].
    """

    cate_preds: list[torch.Tensor]
    kernel_preds: list[torch.Tensor]
    mask_feats: torch.Tensor


def conv_gn_relu(in_channels: int, out_channels: int, groups: int, kernel_size: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.GroupNorm(groups, out_channels),
        nn.ReLU(inplace=True),
    )


def grid_branches(in_channels: int, channels: int, num_convs: int, norm_groups: int) -> tuple[nn.Sequential, nn.Sequential]:
    """The kernel branch (its first conv also takes the two CoordConv channels) and the category
    branch: ``num_convs`` 3x3 conv/GN/ReLU layers each, as SOLOv2's head."""
    kernel = nn.Sequential(*[conv_gn_relu(in_channels + 2 if i == 0 else channels, channels, norm_groups)
                             for i in range(num_convs)])
    category = nn.Sequential(*[conv_gn_relu(in_channels if i == 0 else channels, channels, norm_groups)
                               for i in range(num_convs)])
    return kernel, category


def with_coords(x: torch.Tensor) -> torch.Tensor:
    """Append CoordConv channels (x then y, each in [-1, 1]) to x [B, C, H, W] -> [B, C+2, H, W]."""
    b, _, h, w = x.shape
    grid_y, grid_x = torch.meshgrid(_unit_range(h, x), _unit_range(w, x), indexing="ij")
    coords = torch.stack([grid_x, grid_y]).unsqueeze(0).expand(b, -1, -1, -1)
    return torch.cat([x, coords], dim=1)


def _unit_range(n, like: torch.Tensor) -> torch.Tensor:
    """n evenly spaced values from -1 to 1 (linspace), written with arange so that an exported
    graph keeps n symbolic instead of baking in the example's size."""
    steps = torch.arange(n, device=like.device, dtype=like.dtype)
    return steps / steps[-1:].clamp(min=1.0) * 2.0 - 1.0


def dynamic_mask_logits(kernels: torch.Tensor, mask_feats: torch.Tensor) -> torch.Tensor:
    """Each kernel applied as a 1x1 convolution to its image's mask features.

    kernels: [B, N, E]; mask_feats: [B, E, H, W] -> logits [B, N, H, W].
    """
    b, e, h, w = mask_feats.shape
    return torch.bmm(kernels, mask_feats.reshape(b, e, h * w)).reshape(b, -1, h, w)


class MaskBranch(nn.Module):
    """Mask features: CoordConv, ``num_convs`` x (3x3 conv, GN, ReLU), then 1x1 to E (GN, ReLU)."""

    def __init__(self, in_channels: int, channels: int = 128, out_channels: int = 256,
                 num_convs: int = 4, groups: int = 32):
        super().__init__()
        layers = [conv_gn_relu(in_channels + 2 if i == 0 else channels, channels, groups) for i in range(num_convs)]
        self.convs = nn.Sequential(*layers)
        self.out = conv_gn_relu(channels, out_channels, groups, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.convs(with_coords(x)))


class SOLOv2Head(nn.Module):
    """Kernel + category branches on S x S grids and the mask branch.

    Args:
        in_channels: channels of the fused feature F.
        num_classes: category count (no background class; sigmoid scores).
        channels: width of the kernel and category branches.
        num_convs: 3x3 conv/GN/ReLU layers per branch.
        kernel_dim: E, the length of each dynamic kernel (= mask feature channels).
        mask_channels: width of the mask branch.
        num_grids: S of each grid, finest first.
        norm_groups: GroupNorm groups.
    """

    def __init__(self, in_channels: int = 256, num_classes: int = 80, channels: int = 256, num_convs: int = 4,
                 kernel_dim: int = 256, mask_channels: int = 128,
                 num_grids: Sequence[int] = (40, 36, 24, 16, 12), norm_groups: int = 32):
        super().__init__()
        self.num_classes = num_classes
        self.num_grids = tuple(num_grids)
        self.kernel_convs, self.cate_convs = grid_branches(in_channels, channels, num_convs, norm_groups)
        self.kernel_out = nn.Conv2d(channels, kernel_dim, 3, padding=1)
        self.cate_out = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.mask_branch = MaskBranch(in_channels, mask_channels, kernel_dim, num_convs, norm_groups)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        # Focal-loss prior: every cell starts at p = 0.01 so the loss is not swamped at step 0.
        nn.init.constant_(self.cate_out.bias, -math.log((1 - 0.01) / 0.01))

    def forward(self, feature: torch.Tensor) -> HeadOutputs:
        """feature: [B, C, H/8, W/8] -> HeadOutputs."""
        cate_preds, kernel_preds = [], []
        feature_xy = with_coords(feature)
        for s in self.num_grids:
            resized = F.interpolate(feature_xy, size=(s, s), mode="bilinear", align_corners=False)
            kernel_preds.append(self.kernel_out(self.kernel_convs(resized)))
            cate_preds.append(self.cate_out(self.cate_convs(resized[:, :-2])))
        return HeadOutputs(cate_preds, kernel_preds, self.mask_branch(feature))
