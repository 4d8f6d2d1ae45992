"""Backbone (paper §III, Fig. 1): a torchvision ResNet giving C3, C4, C5.

Like timm's ``features_only`` models, the backbone publishes ``feature_info`` — the channels
and strides of what it returns — as its contract with the neck.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from csrinfer.errors import ConfigError

_RESNETS = {
    "resnet18": (torchvision.models.resnet18, "ResNet18_Weights"),
    "resnet34": (torchvision.models.resnet34, "ResNet34_Weights"),
    "resnet50": (torchvision.models.resnet50, "ResNet50_Weights"),
    "resnet101": (torchvision.models.resnet101, "ResNet101_Weights"),
}


class ResNetBackbone(nn.Module):
    """ResNet stem + 4 stages; returns (C3, C4, C5) at strides 8, 16, 32.

    Args:
        name: one of resnet18/34/50/101.
        pretrained: load torchvision's ImageNet weights (downloads once; never required).
        frozen_stages: stages whose parameters are frozen (0: none, 1: stem + layer1, ...).
        norm_eval: keep every BatchNorm in eval mode while training (statistics frozen).
    """

    def __init__(self, name: str = "resnet50", pretrained: bool = False, frozen_stages: int = 1,
                 norm_eval: bool = True):
        super().__init__()
        if name not in _RESNETS:
            raise ConfigError(f"unknown backbone '{name}'; choose one of {sorted(_RESNETS)}")
        build, weights_enum = _RESNETS[name]
        weights = getattr(torchvision.models, weights_enum).IMAGENET1K_V1 if pretrained else None
        try:
            net = build(weights=weights)
        except Exception as e:  # offline machine, proxy, corrupt cache
            raise ConfigError(
                f"could not load ImageNet weights for {name} ({type(e).__name__}: {e}); "
                "set model.pretrained: false to train from scratch"
            ) from None
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        widths = [_stage_width(s) for s in (self.layer2, self.layer3, self.layer4)]
        self.feature_info = [
            dict(num_chs=c, reduction=r, module=m)
            for c, r, m in zip(widths, (8, 16, 32), ("layer2", "layer3", "layer4"))
        ]
        self._freeze()

    @property
    def out_channels(self) -> list[int]:
        return [f["num_chs"] for f in self.feature_info]

    def _freeze(self) -> None:
        freeze_stages([self.stem, self.layer1, self.layer2, self.layer3, self.layer4], self.frozen_stages)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.norm_eval:
            batch_norms_to_eval(self)
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: float [B,3,H,W] normalised; returns C3 [B,c3,H/8,W/8], C4 [/16], C5 [/32]."""
        x = self.layer1(self.stem(x))
        c3 = self.layer2(x)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return c3, c4, c5


def _stage_width(stage: nn.Sequential) -> int:
    last = stage[-1]
    conv = getattr(last, "conv3", None) or last.conv2
    return conv.out_channels


def freeze_stages(stages, frozen_stages: int) -> None:
    """No gradient for the stem and the first ``frozen_stages`` stages (mmdetection's
    ``frozen_stages``: 1 freezes the stem and layer1, 0 nothing; -1 nothing either)."""
    for stage in stages[: frozen_stages + 1 if frozen_stages > 0 else 0]:
        for p in stage.parameters():
            p.requires_grad_(False)


def batch_norms_to_eval(module: nn.Module) -> None:
    """BatchNorm layers keep their ImageNet statistics while the rest trains (``norm_eval``)."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
