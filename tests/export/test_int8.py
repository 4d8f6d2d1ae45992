"""INT8 export: a calibrated QDQ graph whose network is quantized and whose post-processing is not."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from csrinfer import Segmenter
from csrinfer.errors import DatasetError
from csrinfer.export.int8 import MIN_CALIB_IMAGES, network_nodes, quantize_int8
from csrinfer.apps.compare import compare, parity_segmenters
from tests.conftest import photo_like


@pytest.fixture(scope="module")
def calib_data(tmp_path_factory):
    from csrinfer.data.synthetic import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("calib") / "shapes", n_train=MIN_CALIB_IMAGES, n_val=1, seed=4)


@pytest.fixture(scope="module")
def small_int8(tmp_path_factory, small_onnx, calib_data):
    return quantize_int8(small_onnx, tmp_path_factory.mktemp("int8") / "model.int8.onnx", calib_data)


def test_network_is_the_weighted_layers_and_what_feeds_them():
    """conv(x, W) -> relu -> matmul(relu, y): the matmul multiplies two activations (post-processing)."""
    w = helper.make_tensor("W", TensorProto.FLOAT, [2, 3, 1, 1], np.ones(6, np.float32))
    nodes = [helper.make_node("Sub", ["x", "m"], ["xn"], name="norm"),
             helper.make_node("Conv", ["xn", "W"], ["c"], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "y"], ["z"], name="dynamic_matmul")]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("x", "m", "y")]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)], [w])
    assert network_nodes(graph) == {"norm", "conv"}


def test_convolutions_are_int8_and_post_processing_is_fp32(small_cfg, small_onnx, small_int8):
    fp32, int8 = onnx.load(str(small_onnx)).graph, onnx.load(str(small_int8)).graph
    int8_weights = {t.name for t in int8.initializer if t.data_type == TensorProto.INT8}
    dequantized = {node.output[0]: node.input[0] for node in int8.node if node.op_type == "DequantizeLinear"}
    readers = [node for node in int8.node if any(name in dequantized for name in node.input)]
    convs = [node for node in int8.node if node.op_type == "Conv"]
    assert len(convs) == sum(node.op_type == "Conv" for node in fp32.node)
    fp32_convs = [c for c in convs if dequantized.get(c.input[1]) not in int8_weights]
    # The head's last layers stay FP32: category and kernel outputs at each grid, and the mask branch's last conv
    assert len(fp32_convs) == 2 * len(small_cfg.model.num_grids) + 1
    assert all(c.input[0] in dequantized for c in convs if c not in fp32_convs)  # INT8 input and weight
    # No INT8-rounded tensor enters post-processing: the head's outputs are not quantized, and its
    # entry ops (the matmuls of dynamic kernels and Matrix NMS, top-k, gathers) read FP32 tensors only.
    quantized = {node.input[0] for node in int8.node if node.op_type == "QuantizeLinear"}
    assert not any(set(c.output) & quantized for c in fp32_convs)
    assert not {node.op_type for node in readers} & {"MatMul", "TopK", "GatherElements"}
    assert sum(node.op_type == "MatMul" for node in int8.node) == sum(node.op_type == "MatMul" for node in fp32.node) > 0


def test_int8_results_are_close_to_fp32(small_onnx, small_int8):
    seg = Segmenter(small_int8)
    assert seg.info.precision == "int8" and seg.class_names == Segmenter(small_onnx).class_names
    a, b = parity_segmenters(small_onnx, small_int8, "cpu")
    report = compare(a, b, [photo_like(seed, 150 + 20 * seed, 200) for seed in range(3)])
    # Random weights give soft masks (probabilities near the 0.5 threshold) where INT8's ~1% error
    # moves many pixels: close-ish means most instances found again with similar masks and scores.
    assert report.instances_a > 50
    assert report.matched >= 0.8 * report.instances_a
    assert report.mask_iou_mean >= 0.6 and report.score_diff_mean <= 0.05


def test_openvino_runs_the_int8_graph(small_int8):
    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'csrinfer[openvino]')")
    a, b = parity_segmenters(small_int8, small_int8, "cpu", runtime="openvino", precision="f32")
    report = compare(a, b, [photo_like(7, 160, 224)])
    assert b.backend.name == "OpenVINO" and report.instances_b > 0
    assert report.score_diff_mean <= 0.05  # two INT8 runtimes: different rounding, same ranges


def test_too_few_calibration_images_is_one_sentence(tmp_path, small_onnx):
    from csrinfer.data.synthetic import write_synthetic

    few = write_synthetic(tmp_path / "few", n_train=3, n_val=1, seed=1)
    with pytest.raises(DatasetError, match=f"has 3 images; INT8 calibration needs at least {MIN_CALIB_IMAGES}"):
        quantize_int8(small_onnx, tmp_path / "model.int8.onnx", few)
    assert not (tmp_path / "model.int8.onnx").exists()


def test_nncf_quantizes_the_network_for_openvino_and_leaves_post_processing(tmp_path, small_onnx, calib_data):
    pytest.importorskip("nncf", reason="nncf is not installed (optional: docs/cpu.md)")
    import openvino as ov

    from csrinfer.export.int8 import quantize_openvino

    xml = quantize_openvino(small_onnx, tmp_path / "model.nncf.xml", calib_data)
    seg = Segmenter(xml)
    assert seg.info.precision == "int8" and seg.backend.name == "OpenVINO"
    ops = ov.Core().read_model(str(xml)).get_ops()
    assert sum(op.get_type_name() == "FakeQuantize" for op in ops) > 10
    matmuls = [op for op in ops if op.get_type_name() == "MatMul"]  # the post-processing's
    assert matmuls and all(op.input_value(i).get_node().get_type_name() != "FakeQuantize"
                           for op in matmuls for i in range(2))
    a, b = parity_segmenters(small_onnx, xml, "cpu")
    report = compare(a, b, [photo_like(seed, 150 + 20 * seed, 200) for seed in range(3)])
    assert report.matched >= 0.8 * report.instances_a > 40
