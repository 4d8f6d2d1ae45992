"""The FP16 ONNX graph: the network in float16, its numerically delicate parts in float32.

TensorRT builds FP16 engines from this graph as strongly typed networks, taking each tensor's type
from the graph: TensorRT 10.12 deprecated the weakly typed route (an FP32 graph with the FP16
builder flag) and TensorRT 11 removed it ("Strongly Typed Networks Are Now Required", 10.x -> 11.x
migration guide). So the precision is written into the graph itself. The graph keeps the I/O contract of design.md §2 (float32
``images`` in; float32 ``scores``/``masks`` and int64 ``labels`` out) and casts inside:

- backbone, neck (CSR, D2S) and head convolutions run in float16;
- GroupNorm statistics and affine run in float32 (an ``InstanceNormalization`` in the exported
  graph): a variance of float16 activations overflows or underflows;
- the in-graph post-processing runs in float32 from the head outputs on: the category sigmoid
  and TopK (float16 probabilities tie and change the candidate ranking), the mask sigmoid and
  maskness, and Matrix NMS (mask areas and intersections are pixel counts past float16's 2048
  exact integers).

The mixed precision is set in PyTorch before export rather than by rewriting the ONNX graph, so
the exporter itself types every tensor and no op needs special handling.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn



class Float32GroupNorm(nn.GroupNorm):
    """GroupNorm computed in float32 whatever the input dtype; returns the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(), self.eps).to(x.dtype)


class MixedPrecisionNet(nn.Module):
    """A float16 copy of a CSRD2SNet whose ``predict`` post-processes in float32. Not to be called directly.

    ``predict`` has the signature of ``CSRD2SNet.predict`` so :func:`csrinfer.export.onnx.export_onnx`
    exports it unchanged.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = _float32_group_norms(copy.deepcopy(net).eval().half())

    def predict(self, images: torch.Tensor):
        """images float32 [B, 3, H, W] -> (scores float32, labels int64, masks float32), as CSRD2SNet.predict."""
        return self.net.predict(images.to(torch.float16))  # which post-processes in float32


def export_fp16_onnx(model: nn.Module, path: str | os.PathLike, **export_kwargs) -> Path:
    """Write the mixed-precision graph of ``model`` (a CSRD2SNet) to ``path``.

    ``export_kwargs`` are those of :func:`csrinfer.export.onnx.export_onnx`; ``metadata`` gets
    ``precision: fp16``.

    Example:
        >>> export_fp16_onnx(model, "model_fp16.onnx", input_size=(800, 1344))
    """
    from csrinfer.export.onnx import export_onnx

    metadata = {**dict(export_kwargs.pop("metadata", None) or {}), "precision": "fp16"}
    return export_onnx(MixedPrecisionNet(model), path, metadata=metadata, **export_kwargs)


def graph_precision(proto) -> str:
    """"fp16" when any initializer or typed tensor of an ONNX graph is float16, else "fp32"."""
    from onnx import TensorProto

    if any(t.data_type == TensorProto.FLOAT16 for t in proto.graph.initializer):
        return "fp16"
    values = list(proto.graph.input) + list(proto.graph.value_info) + list(proto.graph.output)
    if any(v.type.tensor_type.elem_type == TensorProto.FLOAT16 for v in values):
        return "fp16"
    for node in proto.graph.node:  # constants folded into nodes
        for a in node.attribute:
            if a.HasField("t") and a.t.data_type == TensorProto.FLOAT16:
                return "fp16"
    return "fp32"


def _float32_group_norms(module: nn.Module) -> nn.Module:
    """Replace every nn.GroupNorm of ``module`` (in place) by a Float32GroupNorm with float32 parameters."""
    for name, child in module.named_children():
        if isinstance(child, nn.GroupNorm):
            gn = Float32GroupNorm(child.num_groups, child.num_channels, child.eps, child.affine)
            gn.load_state_dict({k: v.float() for k, v in child.state_dict().items()})
            setattr(module, name, gn)
        else:
            _float32_group_norms(child)
    return module
