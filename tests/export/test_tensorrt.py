"""The TensorRT builder: what runs without TensorRT (shapes, limits, errors), and a real build where it is installed."""

from __future__ import annotations

import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from csrinfer.errors import BackendUnavailableError, ExportError
from csrinfer.export.tensorrt import (TOPK_MAX, ShapeProfile, build_engine, check_tensorrt_limits,
                                      default_timing_cache, parse_shape, resolve_profile)

try:
    import tensorrt  # noqa: F401

    HAVE_TRT = True
except ImportError:
    HAVE_TRT = False
needs_trt = pytest.mark.skipif(not HAVE_TRT, reason="TensorRT is not installed: its builder libraries are not on PyPI")


@pytest.mark.parametrize("text, want", [("1x3x800x1344", (1, 3, 800, 1344)), (" 4X3x640x640 ", (4, 3, 640, 640)),
                                        ("images:2x3x320x480", (2, 3, 320, 480))])
def test_parse_shape_reads_trtexec_style_shapes(text, want):
    assert parse_shape(text) == want


@pytest.mark.parametrize("text, words", [("1x3x800", None), ("800,1344", "not a shape"), ("1x3x0x32", "zero"),
                                         ("input:1x3x32x32", "names input 'input'"), ("axbxc", "not a shape")])
def test_parse_shape_refuses_malformed_text(text, words):
    if words is None:  # three dimensions parse; the rank is checked against the graph later
        assert parse_shape(text) == (1, 3, 800)
        return
    with pytest.raises(ValueError, match=words):
        parse_shape(text)


def test_static_input_takes_its_own_shape_and_refuses_others():
    profile = resolve_profile([1, 3, 800, 1344])
    assert profile == ShapeProfile((1, 3, 800, 1344), (1, 3, 800, 1344), (1, 3, 800, 1344))
    assert resolve_profile([1, 3, 800, 1344], opt_shape=(1, 3, 800, 1344)) == profile
    with pytest.raises(ExportError, match="static 1x3x800x1344.*--max-shape 2x3x800x1344.*--dynamic"):
        resolve_profile([1, 3, 800, 1344], max_shape=(2, 3, 800, 1344))


def test_dynamic_input_defaults_cover_every_letterboxed_coco_image():
    profile = resolve_profile(["batch", 3, "h", "w"])
    assert profile.min == (1, 3, 32, 32) and profile.opt == (1, 3, 800, 1344) and profile.max == (1, 3, 1344, 1344)
    for h, w in [(800, 1344), (1344, 800), (800, 800), (32, 1344)]:
        assert profile.contains((1, 3, h, w))
    assert not profile.contains((2, 3, 800, 1344)) and not profile.contains((1, 3, 1376, 800))


def test_dynamic_input_takes_given_shapes_and_the_graphs_static_dims():
    profile = resolve_profile([None, 3, None, None], (1, 3, 320, 320), (4, 3, 640, 640), (8, 3, 1024, 1024))
    assert profile.to_json() == {"min": [1, 3, 320, 320], "opt": [4, 3, 640, 640], "max": [8, 3, 1024, 1024]}
    assert resolve_profile([2, 3, None, None]).min == (2, 3, 32, 32)  # static batch kept in the defaults
    assert resolve_profile([None, 3, None, None], opt_shape=(4, 3, 640, 640)).max[0] == 4
    assert resolve_profile([None, 3, None, None], opt_hw=[320, 480]).opt == (1, 3, 320, 480)


@pytest.mark.parametrize("kwargs, words", [
    (dict(min_shape=(1, 3, 640, 640), opt_shape=(1, 3, 320, 320)), "min <= opt <= max"),
    (dict(opt_shape=(1, 4, 640, 640)), "dimension 1 to 4, but the graph fixes it to 3"),
    (dict(max_shape=(1, 3, 640)), "3 dimensions, the input has 4"),
])
def test_dynamic_profile_mistakes_are_one_sentence(kwargs, words):
    with pytest.raises(ExportError, match=words):
        resolve_profile([None, 3, None, None], **kwargs)


def topk_graph(k: int, as_constant_node: bool = False):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5000])
    outs = [helper.make_tensor_value_info("v", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("i", TensorProto.INT64, None)]
    k_tensor = numpy_helper.from_array(np.array([k], np.int64), "k")
    nodes = [helper.make_node("TopK", ["x", "k"], ["v", "i"], name="candidates", axis=1)]
    inits = [k_tensor]
    if as_constant_node:
        nodes.insert(0, helper.make_node("Constant", [], ["k"], value=k_tensor))
        inits = []
    return helper.make_model(helper.make_graph(nodes, "topk", [x], outs, initializer=inits))


@pytest.mark.parametrize("as_constant_node", [False, True])
def test_topk_within_tensorrts_limit_passes_and_beyond_it_is_refused(as_constant_node):
    check_tensorrt_limits(topk_graph(500, as_constant_node))
    check_tensorrt_limits(topk_graph(TOPK_MAX, as_constant_node))
    with pytest.raises(ExportError, match="'candidates' keeps 3841 elements.*at most 3840.*nms_pre"):
        check_tensorrt_limits(topk_graph(TOPK_MAX + 1, as_constant_node))


def test_exported_graph_topks_are_within_the_limit(tmp_path, small_model):
    import onnx

    from csrinfer.export.onnx import export_onnx

    small_model.inference["nms_pre"] = 500  # SOLOv2's setting (the fixture raises it)
    proto = onnx.load(str(export_onnx(small_model, tmp_path / "m.onnx", input_size=(256, 320))))
    ks = [int(numpy_helper.to_array(t)[0]) for t in proto.graph.initializer
          if any(n.op_type == "TopK" and n.input[1] == t.name for n in proto.graph.node)]
    assert ks and max(ks) <= 500
    check_tensorrt_limits(proto)


def test_timing_cache_is_per_tensorrt_version_and_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = default_timing_cache("10.13.0.35", "NVIDIA H100 80GB HBM3")
    assert path == tmp_path / "csrinfer" / "tensorrt-10.13.0.35-nvidia-h100-80gb-hbm3.timing"


def test_without_tensorrt_the_builder_says_how_to_install_it(tmp_path, monkeypatch):
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(topk_graph(10).SerializeToString())
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError
    with pytest.raises(BackendUnavailableError) as e:
        build_engine(onnx_path)
    text = str(e.value)
    assert "TensorRT is not installed" in text
    assert "pip install 'csrinfer[trt]'" in text and "--extra-index-url https://pypi.nvidia.com" in text
    assert not (tmp_path / "m.plan").exists()


def test_builder_refuses_missing_and_foreign_files(tmp_path):
    with pytest.raises(ExportError, match="does not exist"):
        build_engine(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_text("not a protobuf at all")
    with pytest.raises(ExportError, match="not a readable ONNX file"):
        build_engine(bad)
    with pytest.raises(ExportError, match="level must be 0-5"):
        build_engine(bad, opt_level=7)


@needs_trt
def test_engine_of_the_small_model_matches_onnx_runtime(tmp_path, small_model):  # pragma: no cover - needs TensorRT
    import onnxruntime as ort
    import torch

    from csrinfer.export.onnx import export_onnx
    from csrinfer.contract.engine_sidecar import read_sidecar

    onnx_path = export_onnx(small_model, tmp_path / "m.onnx", input_size=(256, 320))
    plan = build_engine(onnx_path, tmp_path / "m.plan", fp16=False, timing_cache=tmp_path / "t.cache")
    metadata, record = read_sidecar(plan)
    assert record.precision == "fp32" and (tmp_path / "t.cache").is_file()
    from csrinfer.runtime.backends.tensorrt import TensorRTBackend

    images = (torch.rand(1, 3, 256, 320, generator=torch.Generator().manual_seed(2)) * 255).numpy()
    want = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"images": images})
    got = TensorRTBackend(plan).infer({"images": images})
    np.testing.assert_allclose(got["scores"].cpu().numpy(), want[0], atol=1e-2)


# --- The builder's own code paths, walked against a recording stand-in for TensorRT -------------

FAKE_VERSIONS = ("10.13.3.9", "11.4.0.106")
# NetworkDefinitionCreationFlag.STRONGLY_TYPED in the real bindings: 1 in 10.13, 0 in 11.4
STRONGLY_TYPED_BIT = {"10.13.3.9": 1, "11.4.0.106": 0}


def use_fake(monkeypatch, tmp_path, version=FAKE_VERSIONS[0]):
    """`tensorrt` replaced by tests/export/fake_tensorrt.py of ``version``, a GPU that says it is an A100."""
    from csrinfer import tensorrt_env
    from tests.export import fake_tensorrt

    fake = fake_tensorrt._load(version)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(tensorrt_env, "gpu", lambda index=0: tensorrt_env.Gpu(0, "NVIDIA A100-SXM4-80GB", (8, 0)))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return fake


@pytest.fixture()
def fake_trt(monkeypatch, tmp_path):
    return use_fake(monkeypatch, tmp_path)


def small_graph(dtype=TensorProto.FLOAT, batch=1, extra_node=None):
    """images -> Conv -> InstanceNorm -> Relu -> Sigmoid -> Reshape -> TopK -> Mul: a network and its post-processing."""
    np_dtype = np.float16 if dtype == TensorProto.FLOAT16 else np.float32
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np_dtype), "w"),
             numpy_helper.from_array(np.ones(4, np_dtype), "s"), numpy_helper.from_array(np.zeros(4, np_dtype), "b"),
             numpy_helper.from_array(np.array([batch, -1], np.int64), "flat"),
             numpy_helper.from_array(np.array([5], np.int64), "k")]
    nodes = [helper.make_node("Conv", ["images", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("InstanceNormalization", ["c", "s", "b"], ["n"], name="norm"),
             helper.make_node("Relu", ["n"], ["r"], name="relu"),
             helper.make_node("Sigmoid", ["r"], ["p"], name="sigmoid"),
             helper.make_node("Reshape", ["p", "flat"], ["f"], name="flatten"),
             helper.make_node("TopK", ["f", "k"], ["scores", "idx"], name="topk"),
             helper.make_node("Mul", ["scores", "scores"], ["sq"], name="square")]
    if extra_node is not None:
        nodes.append(extra_node)
    b = "batch" if batch == -1 else batch
    graph = helper.make_graph(nodes, "small", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [b, 3, "h", "w"]
                                                                            if batch == -1 else [b, 3, 8, 8])],
                              [helper.make_tensor_value_info("sq", dtype, None)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    from csrinfer.export.onnx import set_metadata

    set_metadata(model, {"format": "csrinfer-model", "class_names": ["a"], "input_size": [64, 96]})
    return model


@pytest.mark.parametrize("version", FAKE_VERSIONS)
def test_fp16_graph_is_built_strongly_typed_on_every_version(tmp_path, monkeypatch, version):
    from csrinfer.contract.engine_sidecar import read_sidecar

    fake = use_fake(monkeypatch, tmp_path, version)
    onnx_path = tmp_path / "m16.onnx"
    onnx.save(small_graph(TensorProto.FLOAT16), str(onnx_path))
    plan = build_engine(onnx_path, tmp_path / "out" / "e.engine", workspace_gib=1.5, opt_level=4, timing_cache=False)
    built = fake.Builder._last
    assert built.network.flags == 1 << STRONGLY_TYPED_BIT[version]
    assert built.config._flags == set() and built.config._cache is None  # no precision flags at all
    assert built.config._pools[fake.MemoryPoolType.WORKSPACE] == int(1.5 * 2**30)
    assert built.config.builder_optimization_level == 4 and built.config._profiles == []  # static input
    metadata, record = read_sidecar(plan)
    assert metadata["class_names"] == ["a"] and record.precision == "fp16" and record.gpu_name.startswith("NVIDIA A100")
    assert record.tensorrt_version == version and record.options["typing"] == "strong"
    assert record.input_shapes == {"images": {"min": [1, 3, 8, 8], "opt": [1, 3, 8, 8], "max": [1, 3, 8, 8]}}


@pytest.mark.parametrize("version", FAKE_VERSIONS)
def test_fp32_graph_asked_for_fp16_is_refused_on_every_version(tmp_path, monkeypatch, version):
    fake = use_fake(monkeypatch, tmp_path, version)
    onnx_path = tmp_path / "m.onnx"
    onnx.save(small_graph(), str(onnx_path))
    with pytest.raises(ExportError, match="m.onnx is an FP32 graph.*only from an FP16 graph.*--fp16-onnx.*--fp32"):
        build_engine(onnx_path)
    assert not (tmp_path / "m.plan").exists()
    build_engine(onnx_path, fp16=False)
    assert fake.Builder._last.network.flags == 1 << STRONGLY_TYPED_BIT[version]


def test_timing_cache_is_saved_after_a_build_and_read_before_the_next(tmp_path, fake_trt):
    onnx_path = tmp_path / "m.onnx"
    onnx.save(small_graph(), str(onnx_path))
    build_engine(onnx_path, fp16=False)
    cache = tmp_path / "cache" / "csrinfer" / "tensorrt-10.13.3.9-nvidia-a100-sxm4-80gb.timing"
    assert cache.read_bytes() == b"+timed"
    build_engine(onnx_path, fp16=False)
    assert cache.read_bytes() == b"+timed+timed"


def test_timing_cache_tensorrt_rejects_is_replaced_or_refused(tmp_path, fake_trt, monkeypatch):
    onnx_path = tmp_path / "m.onnx"
    onnx.save(small_graph(), str(onnx_path))
    cache = tmp_path / "old.timing"
    cache.write_bytes(b"another GPU's cache")
    monkeypatch.setattr(fake_trt.IBuilderConfig, "_reject_caches", "stale")  # set_timing_cache -> False
    with pytest.warns(UserWarning, match="old.timing belongs to another TensorRT or GPU; starting a new one"):
        build_engine(onnx_path, fp16=False, timing_cache=cache)
    assert cache.read_bytes() == b"+timed"  # the new cache replaced it
    (tmp_path / "m.plan").unlink()
    for mode in ("create", "set"):  # create_timing_cache -> None, or every set_timing_cache -> False
        monkeypatch.setattr(fake_trt.IBuilderConfig, "_reject_caches", mode)
        with pytest.raises(ExportError, match="could not create a timing cache.*--no-timing-cache"), \
                pytest.warns(UserWarning, match="starting a new one"):  # the fresh cache is refused too
            build_engine(onnx_path, fp16=False, timing_cache=cache)
        assert not (tmp_path / "m.plan").exists()


def test_failed_build_is_one_sentence_with_tensorrts_reason(tmp_path, fake_trt, monkeypatch):
    onnx_path = tmp_path / "m.onnx"
    onnx.save(small_graph(), str(onnx_path))
    monkeypatch.setattr(fake_trt.Builder, "_fail_build", True)  # build_serialized_network -> None
    with pytest.raises(ExportError, match=r"TensorRT 10.13.3.9 could not build an engine from m.onnx: .*Error Code 4"):
        build_engine(onnx_path, fp16=False, timing_cache=False)
    assert not (tmp_path / "m.plan").exists()


def test_dynamic_graph_gets_an_optimisation_profile(tmp_path, fake_trt):
    from csrinfer.contract.engine_sidecar import read_sidecar

    onnx_path = tmp_path / "d.onnx"
    onnx.save(small_graph(batch=-1), str(onnx_path))
    plan = build_engine(onnx_path, fp16=False, max_shape=(2, 3, 640, 640), hardware_compatible=True)
    config = fake_trt.Builder._last.config
    assert config._profiles[0]._shapes == {"images": ((1, 3, 32, 32), (1, 3, 64, 96), (2, 3, 640, 640))}
    assert config.hardware_compatibility_level == fake_trt.HardwareCompatibilityLevel.AMPERE_PLUS
    record = read_sidecar(plan)[1]
    assert record.hardware_compatibility == "ampere_plus" and record.input_shapes["images"]["max"] == [2, 3, 640, 640]


def test_parser_errors_are_reported_node_by_node(tmp_path, fake_trt):
    node = helper.make_node("Mystery", ["sq"], ["out"], name="odd_one", domain="elsewhere")
    onnx_path = tmp_path / "m.onnx"
    onnx.save(small_graph(extra_node=node), str(onnx_path))
    with pytest.raises(ExportError, match=r"TensorRT 10.13.3.9 cannot parse m.onnx: node 7 'odd_one' \(Mystery\) "
                                          r"is not supported: Plugin not found"):
        build_engine(onnx_path, fp16=False)
    assert not (tmp_path / "m.plan").exists()
