"""model.plan.json: written next to every engine, read before it loads, checked against this machine."""

from __future__ import annotations

import json
import warnings

import pytest

from csrinfer.errors import EngineMismatchError, ModelFileError
from csrinfer.contract.engine_sidecar import EngineRecord, check_engine, read_sidecar, sidecar_path, write_sidecar
from csrinfer.tensorrt_env import Gpu

METADATA = {"format": "csrinfer-model", "class_names": ["circle", "star"], "input_size": [320, 480],
            "precision": "fp32", "stride": 8}


def record(**changes) -> EngineRecord:
    values = dict(tensorrt_version="10.13.0.35", gpu_name="NVIDIA A100-SXM4-80GB", compute_capability=(8, 0),
                  precision="fp16", input_shapes={"images": {"min": [1, 3, 320, 480], "opt": [1, 3, 320, 480],
                                                             "max": [1, 3, 320, 480]}},
                  plugins=[{"op": "D2SFused", "domain": "csrinfer", "count": 2}], onnx="model.onnx")
    values.update(changes)
    return EngineRecord(**values)


A100 = Gpu(0, "NVIDIA A100-SXM4-80GB", (8, 0))
A100_40 = Gpu(0, "NVIDIA A100-PCIE-40GB", (8, 0))
H100 = Gpu(0, "NVIDIA H100 80GB HBM3", (9, 0))
T4 = Gpu(0, "Tesla T4", (7, 5))


def test_sidecar_round_trips_next_to_the_plan(tmp_path):
    plan = tmp_path / "model.plan"
    path = write_sidecar(plan, METADATA, record())
    assert path == sidecar_path(plan) == tmp_path / "model.plan.json"
    data = json.loads(path.read_text())
    assert data["class_names"] == ["circle", "star"] and data["precision"] == "fp16"  # the engine's precision wins
    assert data["tensorrt"]["gpu_name"] == "NVIDIA A100-SXM4-80GB"
    metadata, rec = read_sidecar(plan)
    assert rec == record()
    assert metadata["input_size"] == [320, 480] and "tensorrt" not in metadata


def test_missing_or_broken_sidecars_are_one_sentence(tmp_path):
    plan = tmp_path / "model.plan"
    with pytest.raises(ModelFileError, match="has no sidecar model.plan.json.*csrinfer build"):
        read_sidecar(plan)
    sidecar_path(plan).write_text("{not json")
    with pytest.raises(ModelFileError, match="not readable JSON"):
        read_sidecar(plan)
    sidecar_path(plan).write_text(json.dumps({**METADATA}))
    with pytest.raises(ModelFileError, match="no 'csrinfer-engine' section"):
        read_sidecar(plan)
    broken = record().to_json()
    del broken["gpu_name"]
    sidecar_path(plan).write_text(json.dumps({**METADATA, "tensorrt": broken}))
    with pytest.raises(ModelFileError, match="malformed 'tensorrt' section.*gpu_name"):
        read_sidecar(plan)


def test_the_machine_that_built_it_passes():
    check_engine(record(), "10.13.0.35", A100, "model.plan")


def test_another_tensorrt_version_is_named_with_both_versions():
    with pytest.raises(EngineMismatchError) as e:
        check_engine(record(), "10.14.1.48", A100, "model.plan")
    text = str(e.value)
    assert "built by TensorRT 10.13.0.35 but TensorRT 10.14.1.48 is installed" in text
    assert "csrinfer build --model model.onnx" in text


def test_version_compatible_engines_run_on_later_tensorrt_only():
    check_engine(record(version_compatible=True), "11.1.0.106", A100)
    with pytest.raises(EngineMismatchError, match="version-compatible by TensorRT 10.13.0.35.*10.9.0 is installed"):
        check_engine(record(version_compatible=True), "10.9.0", A100)


def test_another_gpu_is_named_with_both_compute_capabilities():
    with pytest.raises(EngineMismatchError) as e:
        check_engine(record(), "10.13.0.35", H100, "model.plan")
    assert "built for NVIDIA A100-SXM4-80GB (compute capability 8.0) but this GPU is NVIDIA H100 80GB HBM3 " \
           "(compute capability 9.0)" in str(e.value)


def test_both_mismatches_are_reported_together():
    with pytest.raises(EngineMismatchError, match="TensorRT 10.14.1 is installed; and it was built for"):
        check_engine(record(), "10.14.1", H100)


def test_same_compute_capability_other_model_runs_with_a_warning():
    with pytest.warns(UserWarning, match="built on NVIDIA A100-SXM4-80GB and runs on NVIDIA A100-PCIE-40GB"):
        check_engine(record(), "10.13.0.35", A100_40)


def test_hardware_compatible_engines_run_on_any_ampere_or_newer_gpu():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_engine(record(hardware_compatibility="ampere_plus"), "10.13.0.35", H100)
    with pytest.raises(EngineMismatchError, match="Ampere or newer GPUs but this GPU is Tesla T4"):
        check_engine(record(hardware_compatibility="ampere_plus"), "10.13.0.35", T4)
