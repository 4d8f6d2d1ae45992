"""Device strings for PyTorch models and training: a typo or a missing GPU is one sentence."""

import pytest
import torch

from csrinfer.errors import BackendUnavailableError, ConfigError
from csrinfer.devices import torch_device
from csrinfer.train.distributed import training_device


def fake_gpus(monkeypatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


@pytest.mark.parametrize("text", ["foo", "mps", "cuda:x", "cuda:-1", "cuda:", "gpu0"])
def test_unknown_devices_are_refused_alike_by_every_backend(text):
    from csrinfer.runtime.backends.onnxruntime import choose_providers
    from csrinfer.runtime.backends.tensorrt import _device_index

    for read in (torch_device, lambda d: choose_providers(d, ["CUDAExecutionProvider"]), _device_index):
        with pytest.raises(ConfigError, match=f"^unknown device '{text}'; use 'cpu', 'cuda' or 'cuda:N'$"):
            read(text)


def test_device_strings_name_a_kind_and_an_index():
    from csrinfer.devices import parse_device
    from csrinfer.runtime.backends.onnxruntime import choose_providers

    assert [parse_device(d) for d in ("cpu", "cuda", "cuda:3")] == [("cpu", None), ("cuda", None), ("cuda", 3)]
    providers, device = choose_providers("cuda:1", ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert device == "cuda:1" and providers[0] == ("CUDAExecutionProvider", {"device_id": 1})


def test_cuda_without_a_gpu_is_one_sentence(monkeypatch):
    fake_gpus(monkeypatch, 0)
    with pytest.raises(BackendUnavailableError, match="PyTorch sees no CUDA GPU here; use 'cpu'$"):
        torch_device("cuda")
    assert torch_device(None) == torch.device("cpu")


def test_a_gpu_index_past_the_last_gpu_names_the_valid_ones(monkeypatch):
    fake_gpus(monkeypatch, 2)
    assert torch_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(BackendUnavailableError, match=r"sees 2 CUDA GPU\(s\); use 'cpu' or 'cuda:0'..'cuda:1'"):
        torch_device("cuda:2")


def test_training_on_bare_cuda_takes_the_local_rank(monkeypatch):
    fake_gpus(monkeypatch, 2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert training_device("cuda") == torch.device("cuda", 1)
    assert training_device("cpu") == torch.device("cpu")
