"""The TensorRT backend of Segmenter, walked against a stand-in for `tensorrt` (tests/export/fake_tensorrt.py).

What TensorRT itself does cannot be tested here (it is not installable); these tests check the
backend's own work: what it refuses before TensorRT sees the plan, and, on a CUDA machine, that
it binds the right buffers, runs on its stream, returns the outputs and replays CUDA graphs.
"""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
import torch

from csrinfer.errors import BackendUnavailableError, EngineMismatchError, ImageError, ModelFileError
from csrinfer.contract.engine_sidecar import EngineRecord, write_sidecar
from csrinfer.tensorrt_env import Gpu

GPU = Gpu(0, "NVIDIA H200", (9, 0))
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (CUDA)")


@pytest.fixture()
def fake_trt(monkeypatch):
    import importlib

    from csrinfer import tensorrt_env

    fake = importlib.import_module("tests.export.fake_tensorrt")
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    gpu = GPU
    if torch.cuda.is_available():  # the real GPU, so the sidecar check passes where buffers are real
        gpu = Gpu(0, torch.cuda.get_device_name(0), tuple(torch.cuda.get_device_capability(0)))
    monkeypatch.setattr(tensorrt_env, "gpu", lambda index=0: gpu)
    if not torch.cuda.is_available():  # no device to make current either
        from csrinfer.runtime.backends import tensorrt as trt_backend

        monkeypatch.setattr(trt_backend, "_set_device", lambda index: None)
    return types.SimpleNamespace(module=fake, gpu=gpu)


def write_plan(tmp_path, gpu, plan_json=None, version="10.13.3.9", shapes=((1, 3, 32, 32), (1, 3, 64, 96), (2, 3, 256, 256))):
    plan = tmp_path / "model.plan"
    plan.write_text(json.dumps(plan_json if plan_json is not None else {"k": 4}))
    metadata = {"format": "csrinfer-model", "format_version": 1, "class_names": ["circle", "star"],
                "input_size": None, "batch": None, "stride": 8, "precision": "fp32"}
    record = EngineRecord(tensorrt_version=version, gpu_name=gpu.name, compute_capability=gpu.compute_capability,
                          precision="fp16", input_shapes={"images": dict(zip(("min", "opt", "max"), map(list, shapes)))},
                          onnx="model.onnx")
    write_sidecar(plan, metadata, record)
    return plan


def backend(plan, **kwargs):
    from csrinfer.runtime.backends.tensorrt import TensorRTBackend

    return TensorRTBackend(plan, **kwargs)


def test_without_tensorrt_the_backend_says_how_to_install_it(tmp_path, monkeypatch):
    plan = write_plan(tmp_path, GPU)
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BackendUnavailableError, match="TensorRT is not installed: pip install 'csrinfer\\[trt\\]'"):
        backend(plan)


def test_refusals_before_tensorrt_sees_the_plan(tmp_path, fake_trt):
    with pytest.raises(ModelFileError, match="does not exist"):
        backend(tmp_path / "missing.plan")
    plan = write_plan(tmp_path, fake_trt.gpu)
    with pytest.raises(BackendUnavailableError, match="runs on a CUDA device.*not 'cpu'"):
        backend(plan, device="cpu")
    (tmp_path / "model.plan.json").unlink()
    with pytest.raises(ModelFileError, match="has no sidecar model.plan.json"):
        backend(plan)
    plan = write_plan(tmp_path, fake_trt.gpu, version="10.9.0.34")
    with pytest.raises(EngineMismatchError, match="built by TensorRT 10.9.0.34 but TensorRT 10.13.3.9 is installed"):
        backend(plan)


def test_plans_tensorrt_cannot_load_are_one_sentence(tmp_path, fake_trt):
    plan = write_plan(tmp_path, fake_trt.gpu)
    plan.write_bytes(b"\x00garbage")
    with pytest.raises(ModelFileError, match="TensorRT 10.13.3.9 could not load model.plan: .*Serialization"):
        backend(plan)
    plan = write_plan(tmp_path, fake_trt.gpu, plan_json={"needs_plugin": "SomeoneElsesPlugin"})
    with pytest.raises(ModelFileError, match="uses a plugin that is not registered.*SomeoneElsesPlugin"):
        backend(plan)


def test_inputs_outside_the_profile_name_the_dimension():
    from csrinfer.runtime.backends.tensorrt import TensorRTBackend
    from pathlib import Path

    fake_self = types.SimpleNamespace(profile=((1, 3, 32, 32), (1, 3, 64, 96), (2, 3, 256, 256)),
                                      path=Path("model.plan"))
    TensorRTBackend.check_profile(fake_self, (2, 3, 256, 32))
    with pytest.raises(ImageError, match=r"input 1x3x288x64 is outside model.plan's optimisation profile \(min "
                                         r"1x3x32x32, max 2x3x256x256\): its height is 288, the engine takes 32 to 256"):
        TensorRTBackend.check_profile(fake_self, (1, 3, 288, 64))
    with pytest.raises(ImageError, match="its batch is 3"):
        TensorRTBackend.check_profile(fake_self, (3, 3, 64, 64))


@needs_cuda
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_infer_binds_the_buffers_and_returns_the_outputs(tmp_path, fake_trt, cuda_graph):
    plan = write_plan(tmp_path, fake_trt.gpu)
    be = backend(plan, cuda_graph=cuda_graph)
    assert be.info.class_names == ("circle", "star") and be.device == "cuda:0"
    for seed in (0, 1, 2):  # with graphs: captured on the first call, replayed with new data after
        images = np.random.default_rng(seed).uniform(0, 255, (2, 3, 64, 96)).astype(np.float32)
        out = be.infer({"images": images})
        assert out["scores"].shape == (2, 4) and out["masks"].shape == (2, 4, 8, 12)
        np.testing.assert_array_equal(out["scores"].cpu().numpy().ravel(), images.ravel()[:8])
        assert out["labels"].dtype == torch.int64 and int(out["labels"].abs().sum()) == 0
    assert be.context._runs == (2 if cuda_graph else 3)  # capture runs it twice; replays do not call it
    images = np.random.default_rng(4).uniform(0, 255, (5, 3, 64, 96)).astype(np.float32)
    out = be.infer({"images": images})  # more than the profile's batch 2: chunks of 2, 2 and 1
    assert out["scores"].shape == (5, 4)
    for i, chunk in enumerate([images[0:2], images[2:4], images[4:5]]):
        np.testing.assert_array_equal(out["scores"][2 * i:2 * i + len(chunk)].cpu().numpy().ravel(),
                                      chunk.ravel()[:4 * len(chunk)])
    with pytest.raises(ImageError, match="outside model.plan's optimisation profile"):
        be.infer({"images": np.zeros((1, 3, 512, 64), np.float32)})


@needs_cuda
def test_cuda_python_buffers_when_pytorch_has_no_cuda(tmp_path, fake_trt, monkeypatch):
    from csrinfer.runtime.backends import tensorrt as trt_backend

    monkeypatch.setattr(trt_backend, "_torch_cuda", lambda: False)
    be = backend(write_plan(tmp_path, fake_trt.gpu))
    images = np.random.default_rng(3).uniform(0, 255, (1, 3, 32, 64)).astype(np.float32)
    out = be.infer({"images": images})
    assert isinstance(out["scores"], np.ndarray) and out["masks"].shape == (1, 4, 4, 8)
    np.testing.assert_array_equal(out["scores"].ravel(), images.ravel()[:4])
