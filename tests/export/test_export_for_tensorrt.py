"""``csrinfer export`` towards TensorRT: the FP16 and plugin graphs it writes, and which one the engine is built from."""

from __future__ import annotations

import enum
import json
import sys

import onnx
import pytest
import torch

from csrinfer.export.fp16 import graph_precision
from csrinfer.export.onnx import read_metadata
from csrinfer.export.pipeline import ExportOptions, export_model
from csrinfer.export.plugin_graph import fused_nodes

SIZE = (160, 224)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, small_cfg):
    import copy

    from csrinfer.model.checkpoint import save_checkpoint
    from csrinfer.model import build_model
    from tests.conftest import make_confident

    cfg = copy.deepcopy(small_cfg)
    torch.manual_seed(0)
    model = make_confident(build_model(cfg), alive_classes=1, nms_pre=cfg.inference.nms_pre).eval()
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "small.pth", model, cfg)


@pytest.fixture()
def fake_trt(monkeypatch, tmp_path):
    """A stand-in TensorRT (tests/export/fake_tensorrt.py) whose parser knows the plugin once it is registered."""
    import importlib

    from csrinfer.plugins import tensorrt_plugin
    from csrinfer import tensorrt_env
    from tests.plugins.test_tensorrt_plugin import fake_trtp

    fake = importlib.import_module("tests.export.fake_tensorrt")
    trtp = fake_trtp()
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setitem(sys.modules, "tensorrt.plugin", trtp)
    monkeypatch.setattr(fake, "plugin", trtp, raising=False)
    monkeypatch.setattr(fake.OnnxParser, "_registered_plugins", {("csrinfer", "D2SFused")})
    monkeypatch.setitem(tensorrt_plugin._state, "registered", False)
    monkeypatch.setattr(tensorrt_env, "gpu", lambda index=0: tensorrt_env.Gpu(0, "NVIDIA L4", (8, 9)))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return fake


def test_without_tensorrt_export_writes_the_graphs_asked_for(tmp_path, ckpt, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    result = export_model(ckpt, ExportOptions(out_dir=tmp_path, input_size=SIZE, write_plugin=True, fp16_onnx=True))
    assert result.engine is None and any("TensorRT is not installed" in n for n in result.notes)
    assert [p.name for p in result.graphs] == ["model.fp16.onnx", "model.fp16.plugin.onnx"]
    standard, fp16, plugin = (onnx.load(str(p)) for p in [result.onnx, *result.graphs])
    assert not fused_nodes(standard) and graph_precision(standard) == "fp32"
    assert graph_precision(fp16) == "fp16" and read_metadata(fp16)["precision"] == "fp16"
    assert len(fused_nodes(plugin)) == 2 and graph_precision(plugin) == "fp16"
    assert read_metadata(plugin)["class_names"] == read_metadata(standard)["class_names"]


def test_engine_is_built_from_the_plugin_graph(tmp_path, ckpt, fake_trt):
    result = export_model(ckpt, ExportOptions(out_dir=tmp_path, input_size=SIZE, builder={"opt_level": 2}))
    assert [p.name for p in result.graphs] == ["model.fp16.onnx", "model.fp16.plugin.onnx"] and not result.notes
    assert result.engine == tmp_path / "model.plan"
    sidecar = json.loads((tmp_path / "model.plan.json").read_text())
    trt = sidecar["tensorrt"]
    assert trt["onnx"] == "model.fp16.plugin.onnx" and trt["precision"] == "fp16"
    assert trt["plugins"] == [{"op": "D2SFused", "domain": "csrinfer", "count": 2}]
    assert trt["options"]["typing"] == "strong" and trt["options"]["opt_level"] == 2
    assert sidecar["class_names"] == list(read_metadata(onnx.load(str(result.onnx)))["class_names"])
    plugin_layers = [la for la in fake_trt.Builder._last.network._layers if la.type == fake_trt.LayerType.PLUGIN_V3]
    assert len(plugin_layers) == 2


@pytest.mark.parametrize("version", ["10.13.3.9", "11.4.0.106"])
def test_fp16_engine_is_built_from_the_fp16_graph_on_every_version(tmp_path, ckpt, fake_trt, monkeypatch, version):
    from tests.export import fake_tensorrt

    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt._load(version))
    result = export_model(ckpt, ExportOptions(out_dir=tmp_path, input_size=SIZE, plugin=False))
    assert [p.name for p in result.graphs] == ["model.fp16.onnx"]
    trt = json.loads((tmp_path / "model.plan.json").read_text())["tensorrt"]
    assert trt["onnx"] == "model.fp16.onnx" and trt["precision"] == "fp16" and trt["tensorrt_version"] == version
    assert trt["options"]["typing"] == "strong" and trt["plugins"] == []
