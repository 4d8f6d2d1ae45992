"""Model repositories: every config.pbtxt parses into Triton's ModelConfig and names the right tensors."""

import json

import numpy as np
import pytest

from csrinfer.errors import ConfigError, ExportError, ModelFileError
from csrinfer.serve import protocol
from csrinfer.serve.repository import write_serve_repo, write_triton_repo

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="needs tritonclient[grpc]")
TYPE_NAMES = {"TYPE_FP32": "tensor(float)", "TYPE_INT64": "tensor(int64)"}


def parse(path):
    from google.protobuf import text_format

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def dtype(enum_value) -> str:
    return model_config_pb2.DataType.Name(enum_value)


def params(config) -> dict:
    return {k: v.string_value for k, v in config.parameters.items()}


def test_serve_repo(tmp_path, tiny_checkpoint, small_cfg):
    model_dir = write_serve_repo(tiny_checkpoint, tmp_path / "repo", name="seg", instances=3, max_batch=6)
    config = parse(model_dir / "config.pbtxt")
    assert (config.name, config.backend, config.max_batch_size) == ("seg", "python", 6)
    assert config.dynamic_batching.max_queue_delay_microseconds > 0
    assert [(i.name, dtype(i.data_type), list(i.dims), i.optional) for i in config.input] == [
        ("image", "TYPE_STRING", [1], True), ("image_raw", "TYPE_UINT8", [-1, -1, 3], True)]
    assert [o.name for o in config.output] == list(protocol.OUTPUTS)
    assert [(o.name, dtype(o.data_type), list(o.dims)) for o in config.output] == [
        (n, *protocol.OUTPUT_SPECS[n]) for n in protocol.OUTPUTS]
    assert config.instance_group[0].count == 3
    assert json.loads(params(config)["class_names"]) == list(small_cfg.classes)
    assert json.loads(params(config)["category_ids"]) == small_cfg.category_ids
    assert (model_dir / "1" / params(config)["model_file"]).read_bytes() == tiny_checkpoint.read_bytes()
    assert "SegmenterModel as TritonPythonModel" in (model_dir / "1" / "model.py").read_text()

    off = parse(write_serve_repo(tiny_checkpoint, tmp_path / "repo2", dynamic_batching=False) / "config.pbtxt")
    assert not off.HasField("dynamic_batching")


def test_triton_repo_for_a_dynamic_onnx_export(tmp_path, tiny_onnx):
    import onnxruntime as ort

    repo = write_triton_repo(tiny_onnx, tmp_path / "repo", max_batch=16, instances=2)
    configs = {p.parent.name: parse(p) for p in repo.glob("*/config.pbtxt")}
    assert set(configs) == {"csrinfer", "csrinfer_preprocess", "csrinfer_engine", "csrinfer_postprocess"}
    engine = configs["csrinfer_engine"]
    assert (engine.platform, engine.max_batch_size, engine.instance_group[0].count) == ("onnxruntime_onnx", 16, 2)
    assert (repo / "csrinfer_engine" / "1" / "model.onnx").exists()
    # the engine's tensors as ONNX Runtime sees the file, batch axis dropped
    session = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    for declared, actual in ((engine.input, session.get_inputs()), (engine.output, session.get_outputs())):
        assert [t.name for t in declared] == [t.name for t in actual]
        for t, a in zip(declared, actual):
            assert TYPE_NAMES[dtype(t.data_type)] == a.type
            assert list(t.dims) == [d if isinstance(d, int) else -1 for d in a.shape[1:]]
    ensemble = configs["csrinfer"]
    assert ensemble.platform == "ensemble"
    assert [i.name for i in ensemble.input] == ["image"] and [o.name for o in ensemble.output] == list(protocol.OUTPUTS)
    # every step feeds a model the tensors it declares and reads the ones it produces
    produced = {"image"}
    for step in ensemble.ensemble_scheduling.step:
        model = configs[step.model_name]
        assert set(step.input_map) == {t.name for t in model.input}
        assert set(step.input_map.values()) <= produced
        assert set(step.output_map) == {t.name for t in model.output}
        produced |= set(step.output_map.values())
    assert set(protocol.OUTPUTS) <= produced
    info = json.loads(params(configs["csrinfer_preprocess"])["model_info"])
    assert json.loads(info["class_names"]) == json.loads(params(ensemble)["class_names"])


def test_export_cli_writes_the_triton_repo(tiny_export):
    onnx_path, repo = tiny_export
    engine = parse(repo / "csrinfer_engine" / "config.pbtxt")
    assert engine.platform == "onnxruntime_onnx" and engine.max_batch_size == 8
    assert (repo / "csrinfer_engine" / "1" / "model.onnx").read_bytes() == onnx_path.read_bytes()
    assert parse(repo / "csrinfer" / "config.pbtxt").platform == "ensemble"
    # for NVIDIA's container, where csrinfer is installed: model.py adds no folders of this machine
    assert "PATHS = []" in (repo / "csrinfer_preprocess" / "1" / "model.py").read_text()


def fake_export(path, batch, size, k=20):
    """A graph with the exported I/O contract and csrinfer metadata (only its declarations matter here)."""
    import onnx
    from onnx import TensorProto, helper

    from csrinfer.contract.model_info import ModelInfo

    h, w = size
    outs = [("scores", TensorProto.FLOAT, [batch, k]), ("labels", TensorProto.INT64, [batch, k]),
            ("masks", TensorProto.FLOAT, [batch, k, h // 8, w // 8])]
    nodes = [helper.make_node("Constant", [], [n], value=helper.make_tensor(n, t, s, np.zeros(s).ravel().tolist()))
             for n, t, s in outs]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, h, w])],
                              [helper.make_tensor_value_info(n, t, s) for n, t, s in outs])
    proto = helper.make_model(graph)
    info = ModelInfo(class_names=("a", "b"), input_size=size, batch=batch, inference={"max_per_img": k})
    for key, value in info.to_metadata().items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))
    return path, info


def test_triton_repo_for_a_static_batch_of_one(tmp_path):
    path, _ = fake_export(tmp_path / "model.onnx", 1, (64, 96))
    repo = write_triton_repo(path, tmp_path / "repo")
    for config_path in repo.glob("*/config.pbtxt"):
        config = parse(config_path)
        assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
        for t in list(config.input) + list(config.output):
            assert t.dims[0] == 1, (config.name, t.name)  # no batch axis: every tensor spells out its 1
    engine = parse(repo / "csrinfer_engine" / "config.pbtxt")
    assert [list(t.dims) for t in engine.output] == [[1, 20], [1, 20], [1, 20, 8, 12]]


def test_a_static_batch_over_one_is_refused(tmp_path):
    path, _ = fake_export(tmp_path / "model.onnx", 2, (64, 96))
    with pytest.raises(ExportError, match="static batch of 2"):
        write_triton_repo(path, tmp_path / "repo")


def test_triton_repo_for_a_tensorrt_plan_reads_its_sidecar(tmp_path):
    from csrinfer.contract.engine_sidecar import EngineRecord, write_sidecar
    from csrinfer.contract.model_info import ModelInfo

    plan = tmp_path / "model.plan"
    plan.write_bytes(b"not parsed: Triton's TensorRT backend reads it")
    info = ModelInfo(class_names=("a", "b", "c"), category_ids=(3, 7, 12), input_size=(96, 128), batch=None,
                     inference={"max_per_img": 30})
    shapes = {"images": {k: [1, 3, 96, 128] for k in ("min", "opt", "max")}}
    write_sidecar(plan, info.to_metadata(), EngineRecord("10.13.0", "NVIDIA H200", (9, 0), "fp16", shapes))
    repo = write_triton_repo(plan, tmp_path / "repo", max_batch=4)
    engine = parse(repo / "csrinfer_engine" / "config.pbtxt")
    assert (engine.platform, engine.max_batch_size) == ("tensorrt_plan", 4)
    assert (repo / "csrinfer_engine" / "1" / "model.plan").read_bytes() == plan.read_bytes()
    assert [(t.name, list(t.dims)) for t in engine.input] == [("images", [3, 96, 128])]
    assert [(t.name, dtype(t.data_type), list(t.dims)) for t in engine.output] == [
        ("scores", "TYPE_FP32", [30]), ("labels", "TYPE_INT64", [30]), ("masks", "TYPE_FP32", [30, 12, 16])]
    ensemble = params(parse(repo / "csrinfer" / "config.pbtxt"))
    assert json.loads(ensemble["class_names"]) == ["a", "b", "c"] and json.loads(ensemble["category_ids"]) == [3, 7, 12]


def test_model_file_mistakes_are_one_sentence(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        write_serve_repo(tmp_path / "missing.pth", tmp_path / "repo")
    with pytest.raises(ModelFileError, match="suffix"):
        write_triton_repo(tmp_path / "model.pth", tmp_path / "repo")
    (tmp_path / "lonely.plan").write_bytes(b"x")
    with pytest.raises(ModelFileError, match="sidecar"):
        write_triton_repo(tmp_path / "lonely.plan", tmp_path / "repo")


@pytest.mark.parametrize("options,says", [
    ({"kind": "gpu"}, "kind must be one of KIND_GPU, KIND_CPU"),
    ({"python_paths": ["/x"]}, "python_paths must map a role to a list of folders"),
    ({"max_batch": "8"}, "the largest batch must be a whole number of at least 1, got '8'"),
])
def test_bad_arguments_leave_an_existing_repository_as_it_was(tmp_path, options, says):
    path, _ = fake_export(tmp_path / "model.onnx", 1, (64, 96))
    repo = write_triton_repo(path, tmp_path / "repo")
    before = sorted(str(p.relative_to(repo)) for p in repo.rglob("*"))
    with pytest.raises(ConfigError, match=says):
        write_triton_repo(path, repo, **options)
    assert sorted(str(p.relative_to(repo)) for p in repo.rglob("*")) == before
