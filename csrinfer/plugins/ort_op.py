"""``D2SFused`` in ONNX Runtime, backed by the PyTorch reference: the plugin graph runs without TensorRT.

TensorRT runs ``csrinfer::D2SFused`` through its plugin; on a CPU the same graph runs here, so CI
checks that the plugin graph computes what the standard graph does (design.md §3).

onnxruntime-extensions' Python custom ops register in the domain ``ai.onnx.contrib`` and take
float32 only (a float16 signature aborts the process), so :func:`to_ort_graph` makes an ONNX
Runtime copy of a plugin graph: the nodes move to that domain, and float16 nodes get casts to
float32 around them (the reference then computes in float32, as the kernel accumulates).
"""

from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import TensorProto, helper

from csrinfer.errors import BackendUnavailableError
from csrinfer.contract.graph import OP_TYPE

ORT_DOMAIN = "ai.onnx.contrib"  # where onnxruntime-extensions looks up Python custom ops
_registered = False


def d2s_fused_numpy(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The custom op's body: csrinfer.model.d2s.d2s_fused_reference on numpy arrays."""
    import torch

    from csrinfer.model.d2s import d2s_fused_reference

    with torch.no_grad():
        out = d2s_fused_reference(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(weight),
                                  torch.from_numpy(bias))
    return out.numpy()


def register() -> str:
    """Register the custom op with onnxruntime-extensions (once per process); returns its library path."""
    global _registered
    try:
        from onnxruntime_extensions import PyCustomOpDef, get_library_path, onnx_op
    except ImportError:
        raise BackendUnavailableError("running a D2SFused plugin graph in ONNX Runtime needs onnxruntime-extensions: "
                                      "pip install onnxruntime-extensions") from None
    if not _registered:
        f32 = PyCustomOpDef.dt_float
        onnx_op(op_type=OP_TYPE, inputs=[f32, f32, f32], outputs=[f32],
                attrs={"plugin_namespace": PyCustomOpDef.dt_string, "plugin_version": PyCustomOpDef.dt_string,
                       "aot": PyCustomOpDef.dt_int64, "blocksize": PyCustomOpDef.dt_int64},
                )(lambda x, w, b, **attrs: d2s_fused_numpy(x, w, b))
        _registered = True
    return get_library_path()


def to_ort_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of a plugin graph that ONNX Runtime with :func:`register`'s op can run."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    dtypes = _elem_types(out)
    nodes = []
    for node in graph.node:
        if node.op_type != OP_TYPE:
            nodes.append(node)
            continue
        node.domain = ORT_DOMAIN
        if dtypes.get(node.input[0]) == TensorProto.FLOAT16:
            # float32 in, float32 out, float16 again for the rest of the graph
            for i, name in enumerate(node.input):
                nodes.append(helper.make_node("Cast", [name], [f"{name}__f32_{node.name}"], to=TensorProto.FLOAT))
                node.input[i] = f"{name}__f32_{node.name}"
            y = node.output[0]
            node.output[0] = f"{y}__f32"
            nodes += [node, helper.make_node("Cast", [node.output[0]], [y], to=TensorProto.FLOAT16)]
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    if all(op.domain != ORT_DOMAIN for op in out.opset_import):
        out.opset_import.append(helper.make_opsetid(ORT_DOMAIN, 1))
    return out


def session(model: str | os.PathLike | onnx.ModelProto, providers=("CPUExecutionProvider",), options=None):
    """An ``onnxruntime.InferenceSession`` for a graph with ``D2SFused`` nodes (or none);
    ``options``: the ``SessionOptions`` to add the custom op to (default: new ones)."""
    import onnxruntime as ort

    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    options = options or ort.SessionOptions()
    options.register_custom_ops_library(register())
    return ort.InferenceSession(to_ort_graph(proto).SerializeToString(), options, providers=list(providers))


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor ONNX shape inference can type (plus inputs and initializers)."""
    types = {t.name: t.data_type for t in model.graph.initializer}
    try:
        inferred = onnx.shape_inference.infer_shapes(model).graph
    except Exception:  # a graph shape inference cannot read: fall back to what is declared
        inferred = model.graph
    for v in list(inferred.input) + list(inferred.value_info) + list(inferred.output):
        if v.type.HasField("tensor_type"):
            types[v.name] = v.type.tensor_type.elem_type
    return types
