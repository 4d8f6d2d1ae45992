"""The whole network of Fig. 1: normalisation, backbone, neck (CSR + D2S), head, post-processing."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from csrinfer.config import IMAGENET_MEAN, IMAGENET_STD
from csrinfer.model.head import HeadOutputs, SOLOv2Head
from csrinfer.model.neck import Neck
from csrinfer.model.postprocess import postprocess


class CSRD2SNet(nn.Module):
    """CSR-D2S instance segmentation network.

    ``forward`` returns the raw head outputs (what training needs); ``predict`` adds the
    in-graph post-processing and returns final instances (what every backend exports/runs).

    Args:
        backbone: module returning (C3, C4, C5); publishes ``out_channels``.
        neck: module fusing them into one stride-8 feature.
        head: ``SOLOv2Head``.
        mean, std: per-channel RGB normalisation applied inside the network, so every backend
            takes the same 0-255 input.
        min_mask_areas: per head grid, the input area a kept mask must exceed (SOLOv2's
            small-mask filter in input pixels, ``ModelConfig.min_mask_input_area``).
        inference: keyword arguments of :func:`csrinfer.model.postprocess.postprocess`.
    """

    stride = 8  # of the fused feature and of the output masks

    def __init__(self, backbone: nn.Module, neck: Neck, head: SOLOv2Head,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 min_mask_areas: Sequence[float] = (128, 128, 256, 512, 512), inference: dict | None = None):
        super().__init__()
        self.backbone, self.neck, self.head = backbone, neck, head
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.min_mask_areas = tuple(min_mask_areas)
        self.inference = dict(inference or {})

    def forward(self, images: torch.Tensor) -> HeadOutputs:
        """images: float [B, 3, H, W], RGB 0-255, H and W multiples of 32 -> HeadOutputs."""
        x = (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)
        return self.head(self.neck(self.backbone(x)))

    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """images as in ``forward`` -> (scores float32 [B,K], labels int64 [B,K], masks float32
        [B,K,H/8,W/8]); K fixed. Post-processing runs in float32 whatever the network's precision
        (an FP16 network's mask logits would lose the maskness and Matrix NMS comparisons)."""
        out = self(images)
        return postprocess([p.float() for p in out.cate_preds], [k.float() for k in out.kernel_preds],
                           out.mask_feats.float(), self.min_mask_areas, mask_stride=self.stride,
                           **self.inference)
