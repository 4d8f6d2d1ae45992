"""Cross-Scale Reweighting, CSR (paper §III-A, Eq. 1-5, Fig. 2).

Each backbone feature Ci is pooled to a vector (GAP, Eq. 3) and reduced to W channels by a
1D convolution W0,i (Eq. 4); the three are concatenated to H (3W, Eq. 2) and mapped to
per-channel weights R = sigmoid(W2 ReLU(W1 H)) (Eq. 1) that rescale the C5 lateral (Eq. 5).
The paper writes W1 W2 H without a non-linearity; two stacked linear maps collapse into one,
so a ReLU sits between them, as in squeeze-and-excitation (design.md §1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class CrossScaleReweighting(nn.Module):
    """Channel weights for the top feature, computed from all backbone levels.

    Args:
        in_channels: channels of C3, C4, C5 (B_i of Eq. 4).
        channels: W, the CSR width ("#channels" of Table III).
        out_channels: channels of the feature being reweighted (the neck width).
    """

    def __init__(self, in_channels: Sequence[int], channels: int = 256, out_channels: int = 256):
        super().__init__()
        # 1x1 convolutions on pooled vectors: the paper's "1D convolutions".
        self.reduce = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)  # W0,i
        self.fc1 = nn.Conv2d(channels * len(in_channels), channels, 1)  # W1
        self.fc2 = nn.Conv2d(channels, out_channels, 1)  # W2

    def weights(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """R of Eq. 1: float [B, out_channels, 1, 1] in (0, 1)."""
        pooled = [reduce(f.mean(dim=(2, 3), keepdim=True)) for reduce, f in zip(self.reduce, features)]
        h = torch.cat(pooled, dim=1)
        return torch.sigmoid(self.fc2(torch.relu(self.fc1(h))))

    def forward(self, features: Sequence[torch.Tensor], top: torch.Tensor) -> torch.Tensor:
        """O = R ⊙ top (Eq. 5); top is the C5 lateral [B, out_channels, H/32, W/32]."""
        return top * self.weights(features)
