"""The plugin graph (design.md §3): D2SFused nodes replace DepthToSpace + depthwise Conv, same outputs."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from csrinfer.export.onnx import export_onnx
from csrinfer.export.plugin_graph import DOMAIN, OP_TYPE, custom_ops, fuse_d2s, fused_nodes
from csrinfer.plugins import ort_op


@pytest.fixture(scope="module")
def standard_graph(tmp_path_factory, small_cfg):
    from csrinfer.model import build_model
    from tests.conftest import make_confident

    torch.manual_seed(0)
    model = make_confident(build_model(small_cfg)).eval()
    path = export_onnx(model, tmp_path_factory.mktemp("plugin") / "m.onnx", input_size=(256, 320))
    return onnx.load(str(path))


def run(session, images):
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, {"images": images})))


def attr(node, name):
    return next(helper.get_attribute_value(a) for a in node.attribute if a.name == name)


def test_every_d2s_pair_becomes_one_plugin_node(standard_graph):
    pairs = sum(n.op_type == "DepthToSpace" for n in standard_graph.graph.node)
    assert pairs == 2  # the two D2S blocks of the neck
    fused, count = fuse_d2s(standard_graph)
    assert count == pairs
    assert not any(n.op_type == "DepthToSpace" for n in fused.graph.node)
    assert len(fused.graph.node) == len(standard_graph.graph.node) - pairs
    inits = {t.name: t for t in fused.graph.initializer}
    for node in fused_nodes(fused):
        assert node.domain == DOMAIN
        assert attr(node, "plugin_namespace") == b"csrinfer" and attr(node, "aot") == 1
        x, w, b = node.input
        assert list(inits[w].dims[1:]) == [1, 3, 3] and list(inits[b].dims) == [inits[w].dims[0]]
    assert any(op.domain == DOMAIN and op.version == 1 for op in fused.opset_import)
    assert custom_ops(fused) == [{"op": OP_TYPE, "domain": DOMAIN, "count": 2}]
    onnx.checker.check_model(fused, full_check=True)


def test_plugin_graph_gives_the_standard_graphs_outputs_in_onnx_runtime(standard_graph):
    fused, _ = fuse_d2s(standard_graph)
    images = (torch.rand(1, 3, 256, 320, generator=torch.Generator().manual_seed(11)) * 255).numpy()
    want = run(ort.InferenceSession(standard_graph.SerializeToString(), providers=["CPUExecutionProvider"]), images)
    got = run(ort_op.session(fused), images)
    assert (want["scores"] > 0).sum() > 10
    np.testing.assert_allclose(got["scores"], want["scores"], atol=1e-5)
    np.testing.assert_array_equal(got["labels"], want["labels"])
    np.testing.assert_allclose(got["masks"], want["masks"], atol=1e-4)


def tiny_graph(mode="CRD", blocksize=2, pads=(1, 1, 1, 1), strides=(1, 1), bias=True, extra_consumer=False,
               channels=8, weight_as_input=False):
    """images [1, C, 5, 6] -> DepthToSpace -> depthwise 3x3 Conv -> y, random weights."""
    rng = np.random.default_rng(3)
    co = channels // (blocksize * blocksize)
    w = numpy_helper.from_array(rng.standard_normal((co, 1, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(co).astype(np.float32), "b")
    nodes = [helper.make_node("DepthToSpace", ["x"], ["s"], mode=mode, blocksize=blocksize),
             helper.make_node("Conv", ["s", "w", "b"] if bias else ["s", "w"], ["y"], group=co,
                              kernel_shape=[3, 3], pads=list(pads), strides=list(strides))]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if extra_consumer:
        nodes.append(helper.make_node("Relu", ["s"], ["r"]))
        outputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, None))
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 5, 6])]
    inits = [w, b]
    if weight_as_input:
        inputs.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [co, 1, 3, 3]))
        inits = [b]
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("kwargs", [dict(mode="DCR"), dict(blocksize=4, channels=32), dict(pads=(0, 0, 0, 0)),
                                    dict(strides=(2, 2)), dict(extra_consumer=True), dict(weight_as_input=True)])
def test_other_patterns_are_left_alone(kwargs):
    model = tiny_graph(**kwargs)
    fused, count = fuse_d2s(model)
    assert count == 0
    assert [n.op_type for n in fused.graph.node] == [n.op_type for n in model.graph.node]


def test_a_conv_without_bias_gets_a_zero_bias_and_the_same_output():
    model = tiny_graph(bias=False)
    fused, count = fuse_d2s(model)
    assert count == 1
    x = np.random.default_rng(5).standard_normal((1, 8, 5, 6)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = ort_op.session(fused).run(None, {"x": x})[0]
    assert got.shape == (1, 2, 10, 12)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_plugin_node_carries_only_what_the_onnx_parser_reads(standard_graph):
    """onnx-tensorrt looks the creator up by (op_type, plugin_version, plugin_namespace) and reads aot;
    it passes the creator only attributes the creator advertises, and D2SFused's register declares none."""
    import inspect

    from csrinfer.export.plugin_graph import PARSER_ATTRIBUTES
    from csrinfer.plugins import tensorrt_plugin

    fused, _ = fuse_d2s(standard_graph)
    for node in fused_nodes(fused):
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        assert set(attrs) == {*PARSER_ATTRIBUTES, "blocksize"}
        assert (node.op_type, attrs["plugin_namespace"], attrs["plugin_version"], attrs["aot"]) == \
            ("D2SFused", b"csrinfer", b"1", 1)
    # the register function's parameters: tensor descriptors only (an attribute would be a plugin field)
    source = inspect.getsource(tensorrt_plugin._define)
    register = source[source.index("def d2s_fused_desc("):source.index(") -> trtp.TensorDesc")]
    assert [p.split(":")[0].strip() for p in register[len("def d2s_fused_desc("):].split(",")] == ["x", "weight", "bias"]
    assert tensorrt_plugin.PLUGIN_ID == f"{attrs['plugin_namespace'].decode()}::{OP_TYPE}"
