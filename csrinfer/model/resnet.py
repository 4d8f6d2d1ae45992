"""A ResNet giving C2-C5, laid out as mmdetection's ``ResNet`` (``style='pytorch'``).

The SOLOv2 family reads four backbone levels (C2 at stride 4 to C5 at stride 32) and must take
mmdetection's weights one to one, including narrow variants (``base_channels``), which
torchvision's constructors cannot build. The blocks are torchvision's own (``BasicBlock``,
``Bottleneck``: stride on the 3x3 conv, as mmdetection's "pytorch" style), and the parameter
names (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0``...) are those of both
libraries, so ImageNet weights from torchvision and checkpoints from mmdetection load as they are.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from csrinfer.errors import ConfigError
from csrinfer.model.backbone import batch_norms_to_eval, freeze_stages

# depth -> (block, blocks per stage); the table of torchvision and mmdetection alike
DEPTHS = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


def depth_of(name: str) -> int:
    """'resnet50' -> 50; anything else is one sentence."""
    depth = name.removeprefix("resnet")
    if not depth.isdigit() or int(depth) not in DEPTHS:
        raise ConfigError(f"unknown backbone '{name}'; choose one of {[f'resnet{d}' for d in DEPTHS]}")
    return int(depth)


class ResNet(nn.Module):
    """ResNet stem + 4 stages; returns (C2, C3, C4, C5) at strides 4, 8, 16, 32.

    Args:
        depth: 18, 34, 50, 101 or 152.
        base_channels: width of the stem and of the first stage's blocks (64 in the paper).
        pretrained: load torchvision's ImageNet weights (base_channels 64 only).
        frozen_stages: stages whose parameters are frozen (0: none, 1: stem + layer1, ...).
        norm_eval: keep every BatchNorm in eval mode while training.
    """

    def __init__(self, depth: int = 50, base_channels: int = 64, pretrained: bool = False,
                 frozen_stages: int = 1, norm_eval: bool = True):
        super().__init__()
        block, counts = DEPTHS[depth]
        self.conv1 = nn.Conv2d(3, base_channels, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_channels, widths = base_channels, []
        for i, count in enumerate(counts):
            planes = base_channels * 2 ** i
            stage = _stage(block, in_channels, planes, count, stride=1 if i == 0 else 2)
            self.add_module(f"layer{i + 1}", stage)
            in_channels = planes * block.expansion
            widths.append(in_channels)
        self.feature_info = [dict(num_chs=c, reduction=4 * 2 ** i, module=f"layer{i + 1}")
                             for i, c in enumerate(widths)]
        self.frozen_stages, self.norm_eval = frozen_stages, norm_eval
        if pretrained:
            self._load_imagenet(depth, base_channels)
        self._freeze()

    @property
    def out_channels(self) -> list[int]:
        return [f["num_chs"] for f in self.feature_info]

    def _load_imagenet(self, depth: int, base_channels: int) -> None:
        if base_channels != 64:
            raise ConfigError(f"ImageNet weights exist for base_channels 64 only, not {base_channels}; "
                              "set model.pretrained: false")
        try:
            weights = getattr(torchvision.models, f"ResNet{depth}_Weights").IMAGENET1K_V1
            state = weights.get_state_dict(progress=False)
        except Exception as e:  # offline machine, proxy, corrupt cache
            raise ConfigError(f"could not load ImageNet weights for resnet{depth} ({type(e).__name__}: {e}); "
                              "set model.pretrained: false") from None
        self.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")})

    def _freeze(self) -> None:
        stem = nn.ModuleList([self.conv1, self.bn1])
        freeze_stages([stem, self.layer1, self.layer2, self.layer3, self.layer4], self.frozen_stages)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.norm_eval:
            batch_norms_to_eval(self)
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """x: float [B, 3, H, W] normalised -> (C2 [/4], C3 [/8], C4 [/16], C5 [/32])."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        return c2, c3, c4, self.layer4(c4)


def _stage(block, in_channels: int, planes: int, count: int, stride: int) -> nn.Sequential:
    out_channels = planes * block.expansion
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                   nn.BatchNorm2d(out_channels))
    blocks = [block(in_channels, planes, stride, downsample)]
    blocks += [block(out_channels, planes) for _ in range(count - 1)]
    return nn.Sequential(*blocks)
