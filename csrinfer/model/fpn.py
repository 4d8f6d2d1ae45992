"""Feature Pyramid Network: P2-P6 from C2-C5, as mmdetection's ``FPN`` builds it for SOLOv2.

1x1 laterals, a top-down pathway (nearest upsampling to the finer level's size + sum), a 3x3
output conv on every level, and one extra coarser level: a stride-2 max-pool of the last output
(mmdetection's ``add_extra_convs=False``, SOLOv2's setting) or a stride-2 3x3 conv on C5, the
last lateral or the last output.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class FPN(nn.Module):
    """(C2, ..., C5) -> (P2, ..., P6), each with ``out_channels``.

    Args:
        in_channels: channels of the backbone levels, finest first.
        out_channels: width of every output level.
        extra: how the extra level is made: "maxpool", "on_input", "on_lateral" or "on_output".
        num_extra: extra levels on top of the inputs' (1: P6).
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int = 256, extra: str = "maxpool",
                 num_extra: int = 1):
        super().__init__()
        self.lateral_convs = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.output_convs = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels)
        self.extra, self.num_extra = extra, num_extra
        self.extra_convs = nn.ModuleList()
        if extra != "maxpool":
            first = in_channels[-1] if extra == "on_input" else out_channels
            self.extra_convs.extend(nn.Conv2d(first if i == 0 else out_channels, out_channels, 3, stride=2, padding=1)
                                    for i in range(num_extra))

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, features)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:],
                                                              mode="nearest")
        outs = [conv(x) for conv, x in zip(self.output_convs, laterals)]
        if self.extra == "maxpool":
            for _ in range(self.num_extra):
                outs.append(F.max_pool2d(outs[-1], 1, stride=2))  # a 1x1 pool: every other pixel
            return outs
        source = {"on_input": features[-1], "on_lateral": laterals[-1], "on_output": outs[-1]}[self.extra]
        for conv in self.extra_convs:
            outs.append(conv(source))
            source = outs[-1]
        return outs
