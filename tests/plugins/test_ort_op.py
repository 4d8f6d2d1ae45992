"""The ONNX Runtime custom op for D2SFused: the reference, reachable from a graph without TensorRT."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from csrinfer.export.plugin_graph import DOMAIN, OP_TYPE
from csrinfer.plugins import ort_op
from tests.model.test_d2s import independent_d2s


def plugin_model(x_shape, weight, bias, dtype=TensorProto.FLOAT):
    n, c, h, w_ = x_shape
    node = helper.make_node(OP_TYPE, ["x", "w", "b"], ["y"], domain=DOMAIN, plugin_namespace="csrinfer",
                            plugin_version="1", aot=1, blocksize=2)
    graph = helper.make_graph([node], "one_op", [helper.make_tensor_value_info("x", dtype, list(x_shape))],
                              [helper.make_tensor_value_info("y", dtype, [n, c // 4, 2 * h, 2 * w_])],
                              initializer=[numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(DOMAIN, 1)])


def test_custom_op_computes_pixel_shuffle_then_depthwise_3x3():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 12, 4, 7)).astype(np.float32)
    w = rng.standard_normal((3, 1, 3, 3)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    got = ort_op.session(plugin_model(x.shape, w, b)).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, independent_d2s(x, w, b), rtol=1e-5, atol=1e-5)


def test_float16_nodes_run_through_float32_casts():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 8, 3, 5)).astype(np.float16)
    w = rng.standard_normal((2, 1, 3, 3)).astype(np.float16)
    b = rng.standard_normal(2).astype(np.float16)
    model = plugin_model(x.shape, w, b, TensorProto.FLOAT16)
    ort_model = ort_op.to_ort_graph(model)
    assert [n.op_type for n in ort_model.graph.node].count("Cast") == 4  # three inputs, one output
    assert next(n for n in ort_model.graph.node if n.op_type == OP_TYPE).domain == ort_op.ORT_DOMAIN
    got = ort_op.session(model).run(None, {"x": x})[0]
    assert got.dtype == np.float16
    want = independent_d2s(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64))
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=2e-3, atol=2e-3)
    onnx.checker.check_model(ort_model)
