"""PyTorch -> ONNX with the I/O contract of design.md §2.

Input ``images`` float32 [B, 3, H, W] RGB 0-255 (padded to a multiple of 32); outputs
``scores`` [B, K], ``labels`` [B, K] int64 and ``masks`` [B, K, H/8, W/8] mask probabilities,
post-processing inside the graph. The graph describes itself through ``metadata_props``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from csrinfer.model.network import CSRD2SNet

INPUT_NAME = "images"
OUTPUT_NAMES = ("scores", "labels", "masks")
DEFAULT_OPSET = 18


class ExportGraph(torch.nn.Module):
    """The network plus in-graph post-processing, as exported. Not to be called directly."""

    def __init__(self, net: CSRD2SNet):
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor):
        return self.net.predict(images)


def export_onnx(model: CSRD2SNet, path: str | os.PathLike, input_size: tuple[int, int] = (800, 1344),
                batch: int = 1, dynamic: bool = False, opset: int = DEFAULT_OPSET,
                metadata: dict | None = None) -> Path:
    """Write ``model`` to ``path`` as ONNX and return the path.

    Args:
        input_size: (H, W) of the example input, multiples of 32; the static shape unless dynamic.
        batch: batch size of the example input (the static batch unless dynamic).
        dynamic: batch, H and W symbolic.
        metadata: string-able values stored in ``metadata_props`` (dicts/lists as JSON).

    Example:
        >>> export_onnx(model, "model.onnx", input_size=(800, 1344))
    """
    import onnx

    h, w = input_size
    if h % 32 or w % 32:
        raise ValueError(f"export size {h}x{w} must be multiples of 32")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    example = torch.rand(batch, 3, h, w) * 255
    dynamic_shapes = None
    if dynamic:
        dynamic_shapes = {"images": {0: torch.export.Dim("batch", min=1, max=256),
                                     2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO}}
    graph = ExportGraph(model).eval()
    with torch.no_grad():
        program = torch.onnx.export(graph, (example,), dynamo=True, input_names=[INPUT_NAME],
                                    output_names=list(OUTPUT_NAMES), opset_version=opset,
                                    dynamic_shapes=dynamic_shapes, external_data=False)
    proto = program.model_proto
    set_metadata(proto, metadata or {})
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
    return path


def set_metadata(proto, metadata: dict) -> None:
    """Replace ``metadata_props`` entries; non-string values are stored as JSON."""
    existing = {p.key: p for p in proto.metadata_props}
    for key, value in metadata.items():
        text = value if isinstance(value, str) else json.dumps(value)
        if key in existing:
            existing[key].value = text
        else:
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, text


def read_metadata(proto) -> dict:
    """``metadata_props`` as a dict, JSON values decoded."""
    out = {}
    for p in proto.metadata_props:
        try:
            out[p.key] = json.loads(p.value)
        except json.JSONDecodeError:
            out[p.key] = p.value
    return out
