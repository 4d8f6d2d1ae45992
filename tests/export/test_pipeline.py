"""The export pipeline (csrinfer export): a checker-valid, simplified, self-describing model.onnx."""

from __future__ import annotations

import importlib.machinery
import sys
import types

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from csrinfer.errors import ExportError
from csrinfer.export.onnx import read_metadata
from csrinfer.export.pipeline import ExportOptions, build_engine_step, export_model
from tests.conftest import EXPORT_SIZE


def dims(value):
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def test_static_export_is_valid_and_describes_itself(small_onnx, confident_cfg):
    proto = onnx.load(str(small_onnx))
    onnx.checker.check_model(proto, full_check=True)
    h, w = EXPORT_SIZE
    assert dims(proto.graph.input[0]) == [1, 3, h, w]
    assert [dims(o) for o in proto.graph.output] == [[1, 50], [1, 50], [1, 50, h // 8, w // 8]]
    meta = read_metadata(proto)
    assert meta["class_names"] == confident_cfg.classes and meta["input_size"] == [h, w]
    assert meta["batch"] == 1 and meta["dynamic"] is False and meta["stride"] == 8
    assert meta["score_thr"] == 0.1 and meta["mask_thr"] == 0.5 and meta["inference"]["nms_kernel"] == "gaussian"
    assert meta["precision"] == "fp32" and meta["config_name"] == "csr_d2s_r18_small"
    assert meta["pad_value"] == confident_cfg.input.mean and meta["short_side"] == 160
    assert {"csrinfer", "torch", "onnx"} <= set(meta["versions"])


def test_dynamic_export_names_its_free_dims(small_onnx_dynamic):
    proto = onnx.load(str(small_onnx_dynamic))
    onnx.checker.check_model(proto, full_check=True)
    assert dims(proto.graph.input[0]) == ["batch", 3, "height", "width"]
    meta = read_metadata(proto)
    assert meta["dynamic"] is True and meta["input_size"] is None and meta["batch"] is None


def test_simplification_folds_the_graph_and_keeps_its_results(tmp_path, small_ckpt, small_onnx):
    plain = export_model(small_ckpt, ExportOptions(out_dir=tmp_path, input_size=EXPORT_SIZE, simplify=False,
                                                   engine=False)).onnx
    simple_nodes, plain_nodes = (len(onnx.load(str(p)).graph.node) for p in (small_onnx, plain))
    assert simple_nodes < plain_nodes
    images = np.random.default_rng(0).random((1, 3, *EXPORT_SIZE), np.float32) * 255
    runs = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"images": images})
            for p in (plain, small_onnx)]
    for a, b in zip(*runs):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("options,says", [
    (ExportOptions(input_size=(100, 224)), "multiples of 32"),
    (ExportOptions(batch=0), "batch must be at least 1"),
    (ExportOptions(opset=12), "opset 12 is too old"),
    (ExportOptions(opset=999), "opset 999 is newer than this onnx package knows"),
    (ExportOptions(input_size=(64,)), r"input size must be \(height, width\) in whole pixels, got \(64,\)"),
    (ExportOptions(input_size=64), r"input size must be \(height, width\) in whole pixels, got \(64,\)"),
])
def test_bad_options_are_one_sentence(small_ckpt, options, says):
    with pytest.raises(ExportError, match=says):
        export_model(small_ckpt, options)


def test_files_of_an_earlier_export_left_in_the_folder_are_named(tmp_path, small_ckpt):
    (tmp_path / "model.plan").write_bytes(b"an engine of another size")
    (tmp_path / "model.onnx").write_bytes(b"replaced")
    result = export_model(small_ckpt, ExportOptions(out_dir=tmp_path, input_size=(64, 64), engine=False))
    assert result.notes[-1].startswith(f"left from an earlier export in {tmp_path}, not rewritten now: model.plan (")
    assert (tmp_path / "model.plan").read_bytes() == b"an engine of another size"  # the user's to delete


def test_without_tensorrt_the_engine_step_says_why(tmp_path):
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    engine, note = build_engine_step(tmp_path / "model.onnx", ExportOptions())
    assert engine is None and note.startswith("TensorRT engine not built: TensorRT is not installed")


def fake_module(monkeypatch, name, **attrs):
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    module.__dict__.update(attrs)
    monkeypatch.setitem(sys.modules, name, module)


def test_with_tensorrt_the_engine_step_calls_the_builder(tmp_path, monkeypatch):
    calls = []

    def build_engine(onnx_path, plan_path):
        calls.append((onnx_path, plan_path))
        return plan_path

    fake_module(monkeypatch, "tensorrt")
    fake_module(monkeypatch, "csrinfer.export.tensorrt", build_engine=build_engine)
    engine, note = build_engine_step(tmp_path / "model.onnx", ExportOptions())
    assert engine == tmp_path / "model.plan" and note is None
    assert calls == [(tmp_path / "model.onnx", tmp_path / "model.plan")]


def test_a_tensorrt_without_a_gpu_is_a_note_not_a_failure(tmp_path, monkeypatch):
    from csrinfer.errors import BackendUnavailableError

    def build_engine(onnx_path, plan_path):
        raise BackendUnavailableError("no CUDA GPU is visible")

    fake_module(monkeypatch, "tensorrt")
    fake_module(monkeypatch, "csrinfer.export.tensorrt", build_engine=build_engine)
    assert build_engine_step(tmp_path / "model.onnx", ExportOptions()) == (
        None, "TensorRT engine not built: no CUDA GPU is visible")


def test_a_cfg_must_belong_to_the_model(small_ckpt, small_cfg, paper_cfg):
    from csrinfer.model import build_model

    with pytest.raises(ExportError, match="cfg= is for an in-memory model; a checkpoint carries its own config"):
        export_model(small_ckpt, ExportOptions(engine=False), cfg=small_cfg)
    with pytest.raises(ExportError, match="has 80 classes but the model has 4"):
        export_model(build_model(small_cfg), ExportOptions(engine=False), cfg=paper_cfg)
