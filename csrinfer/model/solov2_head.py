"""SOLOv2's head on an FPN, as mmdetection 3.3's ``SOLOV2Head`` computes it.

Unlike the CSR-D2S head (one stride-8 feature for every grid), each grid reads its own pyramid
level: P2 downsampled by 2 for the finest grid, P3, P4, P5, and P6 upsampled to P5's size for
the coarsest. Two CoordConv channels are appended to each level *before* it is resized to its
S x S grid (the coordinates are resized with it); the category branch reads the same resized
level without them. The mask features come from P2-P5 at stride 4 (``MaskFeatures``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from csrinfer.model.head import HeadOutputs, conv_gn_relu, grid_branches, with_coords


class MaskFeatures(nn.Module):
    """Stride-4 mask features from P2-P5 (mmdetection's ``MaskFeatModule``).

    Level i (P2 is 0) passes i times through (3x3 conv, GN, ReLU, 2x bilinear upsampling), level
    0 through one conv; the coarsest level gets CoordConv channels first. The levels are summed
    and a 1x1 conv (GN, ReLU) gives ``out_channels`` maps.
    """

    def __init__(self, in_channels: int = 256, channels: int = 128, out_channels: int = 256,
                 num_levels: int = 4, groups: int = 32):
        super().__init__()
        self.levels = nn.ModuleList([nn.Sequential(conv_gn_relu(in_channels, channels, groups))])
        for i in range(1, num_levels):
            layers = []
            for j in range(i):
                first = in_channels + 2 if i == num_levels - 1 else in_channels
                layers += [conv_gn_relu(first if j == 0 else channels, channels, groups),
                           nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)]
            self.levels.append(nn.Sequential(*layers))
        self.out = conv_gn_relu(channels, out_channels, groups, kernel_size=1)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        last = len(self.levels) - 1
        total = self.levels[0](features[0])
        for i in range(1, last + 1):
            x = with_coords(features[i]) if i == last else features[i]
            total = total + self.levels[i](x)
        return self.out(total)


class SOLOv2FPNHead(nn.Module):
    """Kernel and category branches on per-level S x S grids, and the stride-4 mask features.

    Args:
        in_channels: FPN width.
        num_classes: category count (sigmoid scores, no background class).
        channels: width of the kernel and category branches (mmdetection's ``feat_channels``).
        num_convs: 3x3 conv/GN/ReLU layers per branch (``stacked_convs``).
        kernel_dim: E, the mask features' channels and each dynamic kernel's length.
        mask_channels: hidden width of the mask-feature branch.
        num_grids: S of each grid, one per level P2-P6.
        norm_groups: GroupNorm groups.
    """

    def __init__(self, in_channels: int = 256, num_classes: int = 80, channels: int = 512, num_convs: int = 4,
                 kernel_dim: int = 256, mask_channels: int = 128,
                 num_grids: Sequence[int] = (40, 36, 24, 16, 12), norm_groups: int = 32):
        super().__init__()
        self.num_classes = num_classes
        self.num_grids = tuple(num_grids)
        self.kernel_convs, self.cate_convs = grid_branches(in_channels, channels, num_convs, norm_groups)
        self.kernel_out = nn.Conv2d(channels, kernel_dim, 3, padding=1)
        self.cate_out = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.mask_features = MaskFeatures(in_channels, mask_channels, kernel_dim, 4, norm_groups)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.constant_(self.cate_out.bias, -math.log((1 - 0.01) / 0.01))  # focal-loss prior p = 0.01

    def forward(self, levels: Sequence[torch.Tensor]) -> HeadOutputs:
        """levels: (P2, ..., P6) -> HeadOutputs (mask features at stride 4)."""
        if len(levels) != len(self.num_grids):
            raise ValueError(f"the head reads {len(self.num_grids)} levels, got {len(levels)}")
        cate_preds, kernel_preds = [], []
        for level, s in zip(grid_inputs(levels), self.num_grids):
            resized = F.interpolate(with_coords(level), size=(s, s), mode="bilinear", align_corners=False)
            kernel_preds.append(self.kernel_out(self.kernel_convs(resized)))
            cate_preds.append(self.cate_out(self.cate_convs(resized[:, :-2])))
        return HeadOutputs(cate_preds, kernel_preds, self.mask_features(levels[:4]))


def grid_inputs(levels: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The level each grid reads: P2 halved, P3-P5 as they are, P6 brought up to P5's size
    (mmdetection's ``SOLOHead.resize_feats``)."""
    out = [F.interpolate(levels[0], scale_factor=0.5, mode="bilinear", align_corners=False)]
    out += list(levels[1:-1])
    out.append(F.interpolate(levels[-1], size=levels[-2].shape[-2:], mode="bilinear", align_corners=False))
    return out
