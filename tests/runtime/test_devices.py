"""Device strings for PyTorch models and training: a typo or a missing GPU is one sentence."""

import pytest
import torch

from csrinfer.errors import BackendUnavailableError, ConfigError
from csrinfer.runtime.backends.torch import torch_device
from csrinfer.train.distributed import training_device


def fake_gpus(monkeypatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


@pytest.mark.parametrize("text", ["foo", "mps", "cuda:x", "gpu0"])
def test_unknown_devices_are_refused(text):
    with pytest.raises(ConfigError, match=f"unknown device '{text}'; use 'cpu', 'cuda' or 'cuda:N'"):
        torch_device(text)


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
