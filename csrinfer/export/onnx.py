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

from csrinfer.atomic import atomic_write
from csrinfer.model.network import CSRD2SNet
from csrinfer.contract.graph import INPUT_NAME, OUTPUT_NAMES
from csrinfer.contract.model_info import ModelInfo
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
                metadata: dict | None = None, simplify: bool = True) -> Path:
    """Write ``model`` to ``path`` as ONNX (atomically) and return the path.

    Args:
        input_size: (H, W) of the example input, multiples of 32; the static shape unless dynamic.
        batch: batch size of the example input (the static batch unless dynamic).
        dynamic: batch, H and W symbolic (named ``batch``, ``height``, ``width``).
        metadata: string-able values stored in ``metadata_props`` (dicts/lists as JSON).
        simplify: fold constants and fuse with onnxslim after torch's own optimisation pass.

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
                                    dynamic_shapes=dynamic_shapes, external_data=False, verbose=False)
    proto = program.model_proto
    if dynamic:
        name_dynamic_dims(proto, {2: "height", 3: "width"})
    if simplify:
        proto = simplify_graph(proto)
    set_metadata(proto, metadata or {})
    onnx.checker.check_model(proto, full_check=True)
    atomic_write(path, lambda tmp: onnx.save(proto, tmp))
    return path


def simplify_graph(proto):
    """Constant folding and operator fusion with onnxslim (shapes and results unchanged).

    torch's exporter has already folded what it can (``optimize=True``); onnxslim removes the
    remaining shape arithmetic of static graphs. Without onnxslim the graph is returned as is.
    """
    try:
        import onnxslim
    except ImportError:
        return proto
    return onnxslim.slim(proto)


def name_dynamic_dims(proto, names: dict[int, str]) -> None:
    """Rename the exporter's symbolic input dims (``s14``...) to readable names everywhere."""
    import re

    dims = proto.graph.input[0].type.tensor_type.shape.dim
    rename = {dims[axis].dim_param: name for axis, name in names.items() if dims[axis].dim_param}
    if not rename:
        return
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, rename)) + r")\b")
    values = list(proto.graph.input) + list(proto.graph.output) + list(proto.graph.value_info)
    for value in values:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_param = pattern.sub(lambda m: rename[m.group(1)], dim.dim_param)


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


def read_model_info(path: str | os.PathLike) -> ModelInfo:
    """The ModelInfo an exported ``.onnx`` carries (its weights are not loaded)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    weights = {t.name for t in proto.graph.initializer}
    inputs = [(i.name, [d.dim_value if d.HasField("dim_value") else d.dim_param for d in i.type.tensor_type.shape.dim])
              for i in proto.graph.input if i.name not in weights]
    return ModelInfo.from_graph(read_metadata(proto), inputs, [o.name for o in proto.graph.output], str(path))
