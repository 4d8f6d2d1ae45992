"""The FP16 ONNX graph: float16 network, float32 I/O, GroupNorm and post-processing kept in float32."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto

from csrinfer.export.fp16 import export_fp16_onnx, graph_precision
from csrinfer.export.onnx import export_onnx, read_metadata
from csrinfer.export.plugin_graph import fuse_d2s
from csrinfer.plugins import ort_op

SIZE = (256, 320)


@pytest.fixture(scope="module")
def graphs(tmp_path_factory, small_cfg):
    """(FP32 graph, FP16 graph) of one small model."""
    from csrinfer.model import build_model
    from tests.conftest import make_confident

    torch.manual_seed(0)
    model = make_confident(build_model(small_cfg)).eval()
    out = tmp_path_factory.mktemp("fp16")
    fp32 = export_onnx(model, out / "fp32.onnx", input_size=SIZE)
    fp16 = export_fp16_onnx(model, out / "fp16.onnx", input_size=SIZE, metadata={"stride": 8})
    return onnx.load(str(fp32)), onnx.load(str(fp16))


def elem_types(proto):
    types = {t.name: t.data_type for t in proto.graph.initializer}
    for v in list(proto.graph.input) + list(proto.graph.value_info) + list(proto.graph.output):
        types[v.name] = v.type.tensor_type.elem_type
    return types


def run(proto, images, session=None):
    session = session or ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, {"images": images})))


def test_fp16_graph_keeps_float32_io_and_delicate_parts(graphs):
    _, fp16 = graphs
    types = elem_types(fp16)
    assert graph_precision(fp16) == "fp16" and graph_precision(graphs[0]) == "fp32"
    assert read_metadata(fp16)["precision"] == "fp16" and read_metadata(fp16)["stride"] == 8
    assert [types[i.name] for i in fp16.graph.input] == [TensorProto.FLOAT]
    assert [types[o.name] for o in fp16.graph.output] == [TensorProto.FLOAT, TensorProto.INT64, TensorProto.FLOAT]
    by_op = {}
    for node in fp16.graph.node:
        by_op.setdefault(node.op_type, []).append(types.get(node.input[0]))
    assert set(by_op["Conv"]) == {TensorProto.FLOAT16}  # the network
    assert set(by_op["InstanceNormalization"]) == {TensorProto.FLOAT}  # GroupNorm statistics
    assert set(by_op["TopK"]) == {TensorProto.FLOAT}  # candidate ranking
    # post-processing: every sigmoid but CSR's channel weights (inside the network) is float32
    assert by_op["Sigmoid"].count(TensorProto.FLOAT16) == 1
    assert set(by_op["MatMul"]) == {TensorProto.FLOAT}  # masks and Matrix NMS overlaps (pixel counts)


def matched_fraction(got, want, score_tol=0.02, mask_tol=0.01, top=20):
    """Share of the ``top`` confident reference instances that have a same-label instance with a
    score within ``score_tol`` and mask probabilities within ``mask_tol`` (mean absolute difference).

    FP16 rounding can move an instance of a random model past a near-tie in Matrix NMS (many of its
    masks overlap almost exactly), so parity is a large majority, not every single instance.
    """
    s, g = want["scores"][0], got["scores"][0]
    ks = np.flatnonzero(s > 0.3)[:top]
    hits = 0
    for k in ks:
        cands = [j for j in range(len(g)) if got["labels"][0, j] == want["labels"][0, k] and abs(g[j] - s[k]) <= score_tol]
        hits += any(np.abs(got["masks"][0, j] - want["masks"][0, k]).mean() <= mask_tol for j in cands)
    return hits / max(len(ks), 1)


def test_fp16_graph_agrees_with_fp32_in_onnx_runtime(graphs):
    fp32, fp16 = graphs
    images = (torch.rand(1, 3, *SIZE, generator=torch.Generator().manual_seed(3)) * 255).numpy()
    want, got = run(fp32, images), run(fp16, images)
    assert (want["scores"] > 0.3).sum() >= 10
    assert np.abs(np.sort(got["scores"][0])[::-1] - np.sort(want["scores"][0])[::-1]).max() < 0.02
    assert abs(int((got["scores"] > 0.1).sum()) - int((want["scores"] > 0.1).sum())) <= 2
    assert matched_fraction(got, want) >= 0.9


def test_fp16_plugin_graph_agrees_with_fp16_standard_graph(graphs):
    _, fp16 = graphs
    fused, count = fuse_d2s(fp16)
    assert count == 2
    images = (torch.rand(1, 3, *SIZE, generator=torch.Generator().manual_seed(4)) * 255).numpy()
    want, got = run(fp16, images), run(fused, images, ort_op.session(fused))
    # the custom op computes in float32 where ONNX Runtime's Conv computes in float16
    assert np.abs(np.sort(got["scores"][0]) - np.sort(want["scores"][0])).max() < 0.02
    assert matched_fraction(got, want) >= 0.9
