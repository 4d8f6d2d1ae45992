"""OpenVINO backend: the exported ONNX and its IR run by OpenVINO give ONNX Runtime's results."""

from __future__ import annotations

import numpy as np
import pytest

from csrinfer import Segmenter
from csrinfer.errors import ConfigError, ModelFileError
from csrinfer.runtime.backends import load_backend, read_model_info
from tests.conftest import EXPORT_SIZE, delicate_instances, photo_like
from tests.runtime.test_segmenter import assert_same

pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'csrinfer[openvino]')")


@pytest.fixture(scope="module")
def small_ir(tmp_path_factory, small_onnx):
    from csrinfer.export.openvino import write_ir

    xml = tmp_path_factory.mktemp("ir") / "model.xml"
    return write_ir(small_onnx, xml, read_model_info(small_onnx))


def test_fp32_outputs_match_onnx_runtime_slot_by_slot(small_onnx):
    ort = load_backend(small_onnx, "cpu")
    ov = load_backend(small_onnx, "cpu", runtime="openvino", precision="f32")
    assert ov.name == "OpenVINO" and ov.precision == "f32" and ov.device == "cpu"
    images = np.random.default_rng(0).uniform(0, 255, (1, 3, *EXPORT_SIZE)).astype(np.float32)
    want, got = ort.infer({"images": images}), ov.infer({"images": images})
    assert (want["scores"] > 0).sum() > 10  # the confident model fills its slots
    np.testing.assert_array_equal(got["labels"], want["labels"])
    np.testing.assert_allclose(got["scores"], want["scores"], atol=1e-4)
    np.testing.assert_allclose(got["masks"], want["masks"], atol=1e-3)


@pytest.mark.parametrize("size", [(120, 180), (300, 100)])
def test_dynamic_graph_gives_onnx_runtime_instances(small_onnx_dynamic, size):
    image = photo_like(1, *size)
    want_seg = Segmenter(small_onnx_dynamic)
    got = Segmenter(small_onnx_dynamic, runtime="openvino", precision="f32").predict(image)
    assert_same(got, want_seg.predict(image), delicate=delicate_instances(want_seg, image))


def test_ir_keeps_the_metadata_and_the_results(small_onnx, small_ir):
    assert small_ir.with_suffix(".bin").is_file()
    assert read_model_info(small_ir) == read_model_info(small_onnx)  # read from the XML, without OpenVINO
    seg = Segmenter(small_ir, precision="f32")
    assert seg.backend.name == "OpenVINO" and seg.class_names == ("circle", "rectangle", "triangle", "star")
    image = photo_like(2, 150, 200)
    want_seg = Segmenter(small_onnx)
    assert_same(seg.predict(image), want_seg.predict(image), delicate=delicate_instances(want_seg, image))


def test_bf16_is_within_tolerance_where_the_cpu_has_it(small_onnx):
    seg = Segmenter(small_onnx, runtime="openvino", precision="bf16")
    if seg.backend.precision != "bf16":
        pytest.skip(f"this CPU has no bf16: OpenVINO runs {seg.backend.precision}")
    image = photo_like(3, 160, 224)
    want = Segmenter(small_onnx).predict(image)
    got = seg.predict(image)
    # bf16 keeps 8 bits of mantissa: scores move by ~1e-2, the soft masks of random weights by a few pixels
    assert_same(got, want, score_tol=2e-2, min_iou=0.9)


def test_ir_without_its_weights_is_one_sentence(tmp_path, small_ir):
    lone = tmp_path / "model.xml"
    lone.write_bytes(small_ir.read_bytes())
    with pytest.raises(ModelFileError, match="no weights file model.bin"):
        Segmenter(lone)


def test_the_tensorrt_plugin_graph_is_refused(tmp_path, small_onnx):
    import onnx

    from csrinfer.export.plugin_graph import fuse_d2s

    proto, count = fuse_d2s(onnx.load(str(small_onnx)))
    assert count > 0
    path = tmp_path / "model.plugin.onnx"
    onnx.save(proto, str(path))
    with pytest.raises(ModelFileError, match="plugin graph .* OpenVINO cannot run"):
        Segmenter(path, runtime="openvino")


def test_wrong_runtime_choices_are_one_sentence(small_ckpt, small_onnx, small_ir):
    with pytest.raises(ConfigError, match="unknown runtime 'tensorrt'"):
        Segmenter(small_onnx, runtime="tensorrt")
    with pytest.raises(ConfigError, match="runs .onnx and .xml files"):
        Segmenter(small_ckpt, runtime="openvino")
    with pytest.raises(ConfigError, match="runtime 'onnxruntime' runs .onnx files"):
        Segmenter(small_ir, runtime="onnxruntime")
    with pytest.raises(ConfigError, match="precision 'fp16' is not one of f32, bf16"):
        Segmenter(small_onnx, runtime="openvino", precision="fp16")
    with pytest.raises(ConfigError, match="runs on the CPU"):
        Segmenter(small_onnx, "cuda", runtime="openvino")
    with pytest.raises(ConfigError, match="precision do not apply to ONNX Runtime"):
        Segmenter(small_onnx, precision="bf16")
