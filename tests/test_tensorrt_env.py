"""What TensorRT and GPU this machine has, and the one-sentence errors when it has none."""

from __future__ import annotations

import sys
import types

import pytest

from csrinfer.errors import BackendUnavailableError
from csrinfer import tensorrt_env
from csrinfer.tensorrt_env import gpu, import_tensorrt, parse_version


def test_missing_tensorrt_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BackendUnavailableError) as e:
        import_tensorrt()
    assert str(e.value) == ("TensorRT is not installed: pip install 'csrinfer[trt]' --extra-index-url "
                            "https://pypi.nvidia.com (TensorRT's builder libraries come from NVIDIA's package "
                            "index, not PyPI)")


def test_tensorrt_older_than_ahead_of_time_plugins_is_refused(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.8.0.43"))
    with pytest.raises(BackendUnavailableError, match="TensorRT 10.8.0.43 is installed but csrinfer needs TensorRT "
                                                      "10.9 or later.*--upgrade"):
        import_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="11.1.0.106"))
    assert import_tensorrt().__version__ == "11.1.0.106"


@pytest.mark.parametrize("text, want", [("10.13.0.35", (10, 13, 0, 35)), ("11.1.0rc1", (11, 1, 0)), ("10.9", (10, 9)),
                                        ("unknown", ())])
def test_versions_compare_as_numbers(text, want):
    assert parse_version(text) == want
    assert parse_version("10.10.0") > parse_version("10.9.0")


def test_no_gpu_is_one_sentence(monkeypatch):
    monkeypatch.setattr(tensorrt_env, "_torch_gpu", lambda index: None)
    monkeypatch.setattr(tensorrt_env, "_cuda_python_gpu", lambda index: None)
    with pytest.raises(BackendUnavailableError, match="needs an NVIDIA GPU and none is visible here.*nvidia-smi"):
        gpu()
