"""The CSR-D2S network (paper §III) and the SOLOv2 baseline: ``build_model(cfg)`` assembles
either from small parts, as ``cfg.model.arch`` says."""

from __future__ import annotations

import dataclasses

from csrinfer.config import Config
from csrinfer.model.backbone import ResNetBackbone
from csrinfer.model.csr import CrossScaleReweighting
from csrinfer.model.d2s import DepthToSpace, d2s_fused_reference
from csrinfer.model.head import HeadOutputs, SOLOv2Head
from csrinfer.model.neck import Neck
from csrinfer.model.network import CSRD2SNet
from csrinfer.model.postprocess import matrix_nms
from csrinfer.model.solov2 import SOLOv2

__all__ = [
    "build_model", "CSRD2SNet", "ResNetBackbone", "CrossScaleReweighting", "DepthToSpace", "Neck",
    "SOLOv2Head", "HeadOutputs", "d2s_fused_reference", "matrix_nms", "SOLOv2",
]


def build_model(cfg: Config, pretrained: bool | None = None) -> CSRD2SNet:
    """The network described by ``cfg`` (``pretrained`` overrides ``cfg.model.pretrained``)."""
    m = cfg.model
    if m.arch == "solov2":
        return build_solov2(cfg, pretrained)
    backbone = ResNetBackbone(m.backbone, m.pretrained if pretrained is None else pretrained,
                              m.frozen_stages, m.norm_eval)
    csr = CrossScaleReweighting(backbone.out_channels, m.csr_channels, m.neck_channels) if m.csr else None
    neck = Neck(backbone.out_channels, m.neck_channels, csr=csr, d2s=m.d2s)
    head = SOLOv2Head(m.neck_channels, m.num_classes, m.head_channels, m.head_convs, m.kernel_dim,
                      m.mask_channels, m.num_grids, m.norm_groups)
    return CSRD2SNet(backbone, neck, head, cfg.input.mean, cfg.input.std, m.min_mask_input_area,
                     dataclasses.asdict(cfg.inference))


def build_solov2(cfg: Config, pretrained: bool | None = None) -> SOLOv2:
    """mmdetection's SOLOv2 (``cfg.model.arch: solov2``): ResNet C2-C5, FPN P2-P6, per-level head."""
    from csrinfer.model.fpn import FPN
    from csrinfer.model.resnet import ResNet, depth_of
    from csrinfer.model.solov2_head import SOLOv2FPNHead

    m = cfg.model
    backbone = ResNet(depth_of(m.backbone), m.base_channels, m.pretrained if pretrained is None else pretrained,
                      m.frozen_stages, m.norm_eval)
    neck = FPN(backbone.out_channels, m.neck_channels, m.fpn_extra)
    head = SOLOv2FPNHead(m.neck_channels, m.num_classes, m.head_channels, m.head_convs, m.kernel_dim,
                         m.mask_channels, m.num_grids, m.norm_groups)
    return SOLOv2(backbone, neck, head, cfg.input.mean, cfg.input.std, m.min_mask_input_area,
                  dataclasses.asdict(cfg.inference))
