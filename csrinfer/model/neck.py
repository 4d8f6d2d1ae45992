"""The neck (paper §III, Fig. 1): laterals, CSR and D2S fuse C3-C5 into one stride-8 feature.

    O  = CSR(C3, C4, C5) ⊙ lateral(C5)            (or lateral(C5) with CSR off)
    F4 = mean(D2S(O), lateral(C4))                 (or up(O) + lateral(C4) with D2S off)
    F  = mean(D2S'(F4), lateral(C3))               (or up(F4) + lateral(C3) with D2S off)

With both switches off this is the paper's baseline (Table II): a plain FPN top-down pathway,
nearest upsampling and sum, ending at one stride-8 feature.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from csrinfer.model.csr import CrossScaleReweighting
from csrinfer.model.d2s import DepthToSpace


class Laterals(nn.Module):
    """1x1 convolutions taking each Ci to the neck width."""

    def __init__(self, in_channels: Sequence[int], out_channels: int):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [conv(f) for conv, f in zip(self.convs, features)]


class Neck(nn.Module):
    """Fuse (C3, C4, C5) into one feature [B, out_channels, H/8, W/8].

    Args:
        in_channels: channels of C3, C4, C5 (the backbone's ``feature_info``).
        out_channels: neck width W.
        csr: the reweighting module, or None for the ablation without CSR.
        d2s: D2S upsampling + mean (True) or FPN nearest upsampling + sum (False).
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int = 256,
                 csr: CrossScaleReweighting | None = None, d2s: bool = True):
        super().__init__()
        self.laterals = Laterals(in_channels, out_channels)
        self.csr = csr
        self.d2s = nn.ModuleList(DepthToSpace(out_channels, out_channels) for _ in range(2)) if d2s else None

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        l3, l4, l5 = self.laterals(features)
        top = self.csr(features, l5) if self.csr is not None else l5
        if self.d2s is not None:
            f4 = (self.d2s[0](top) + l4) * 0.5
            return (self.d2s[1](f4) + l3) * 0.5
        f4 = _upsample2x(top) + l4
        return _upsample2x(f4) + l3


def _upsample2x(x: torch.Tensor) -> torch.Tensor:
    # Inputs are padded to a multiple of 32, so 2x always lands on the lateral's size.
    return F.interpolate(x, scale_factor=2.0, mode="nearest")
