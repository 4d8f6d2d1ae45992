"""Backends, one per model-file format, chosen once from the file's suffix (design.md §2).

``load_backend(path_or_model, device)`` is what ``Segmenter`` calls. The table maps a suffix
to the module and class that runs it; modules are imported only when their format is used,
so ``import csrinfer`` never needs onnxruntime, OpenVINO or TensorRT. A file that more than one
runtime can run (``.onnx``: ONNX Runtime or OpenVINO) takes ``runtime=`` to pick another than
its suffix's default.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from csrinfer.errors import BackendUnavailableError, ConfigError, ModelFileError
from csrinfer.contract.graph import INPUT_NAME, OUTPUT_NAMES
from csrinfer.runtime.backends.base import Backend

__all__ = ["Backend", "BACKENDS", "INPUT_NAME", "OUTPUT_NAMES", "RUNTIMES", "backend_for", "load_backend",
           "read_model_info"]

OPENVINO = ("csrinfer.runtime.backends.openvino", "OpenVINOBackend", "OpenVINO (pip install 'csrinfer[openvino]')")

# suffix -> (module, class name, what to install when the module cannot be imported)
BACKENDS = {
    ".pth": ("csrinfer.runtime.backends.torch", "TorchBackend", "torch"),
    ".pt": ("csrinfer.runtime.backends.torch", "TorchBackend", "torch"),
    ".onnx": ("csrinfer.runtime.backends.onnxruntime", "OnnxRuntimeBackend", "onnxruntime"),
    ".plan": ("csrinfer.runtime.backends.tensorrt", "TensorRTBackend", "TensorRT (pip install 'csrinfer[trt]')"),
    ".engine": ("csrinfer.runtime.backends.tensorrt", "TensorRTBackend", "TensorRT (pip install 'csrinfer[trt]')"),
    ".xml": OPENVINO,
}

# runtime= names -> (backend, the suffixes it runs)
RUNTIMES = {
    "onnxruntime": (BACKENDS[".onnx"], (".onnx",)),
    "openvino": (OPENVINO, (".onnx", ".xml")),
}


def backend_for(path, runtime: str | None = None) -> type[Backend]:
    """The backend class for a model file: ``runtime``'s ("onnxruntime", "openvino"), else its
    suffix's."""
    suffix = Path(path).suffix.lower()
    if suffix not in BACKENDS:
        raise ModelFileError(f"model file {path} has an unknown suffix '{suffix}'; "
                             f"use one of {', '.join(BACKENDS)}")
    entry = BACKENDS[suffix]
    if runtime is not None:
        if runtime not in RUNTIMES:
            raise ConfigError(f"unknown runtime '{runtime}'; use one of {', '.join(RUNTIMES)}")
        entry, suffixes = RUNTIMES[runtime]
        if suffix not in suffixes:
            raise ConfigError(f"runtime '{runtime}' runs {' and '.join(suffixes)} files, not {path}")
    module_name, class_name, needs = entry
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise BackendUnavailableError(f"cannot run {path}: its backend ({module_name}) needs {needs}, "
                                      f"which cannot be imported here ({e})") from None
    return getattr(module, class_name)


def load_backend(path_or_model, device: str | None = None, runtime: str | None = None, **options) -> Backend:
    """A ready backend for a model file or an in-memory ``torch.nn.Module``.

    ``runtime``: "onnxruntime" or "openvino" for an ``.onnx`` file (default: its suffix's,
    ONNX Runtime for ``.onnx``, OpenVINO for ``.xml``). ``options`` go to the backend's
    constructor (e.g. ``cfg=`` for a module, ``threads=`` for ONNX Runtime, ``precision=`` for
    OpenVINO).
    """
    if isinstance(path_or_model, Backend):
        return path_or_model
    if not isinstance(path_or_model, (str, os.PathLike)):
        import torch

        if not isinstance(path_or_model, torch.nn.Module):
            raise ModelFileError(f"model must be a model file path (.pth, .onnx, .plan, .xml) or a CSRD2SNet, "
                                 f"not {path_or_model!r:.60}")
        from csrinfer.runtime.backends.torch import TorchBackend

        if runtime is not None:
            raise ConfigError(f"runtime='{runtime}' is for model files; an in-memory model runs on PyTorch")
        return TorchBackend(path_or_model, device=device, **_known_options(TorchBackend, options))
    path = Path(path_or_model)
    cls = _backend_of_existing(path, runtime)
    return cls(path, device=device, **_known_options(cls, options))


def read_model_info(path):
    """The :class:`ModelInfo` of a model file (class names, input size, thresholds, ...) without
    loading its weights, read by its backend as ``load_backend`` would."""
    path = Path(path)
    return _backend_of_existing(path).read_info(path)


def _backend_of_existing(path: Path, runtime: str | None = None) -> type[Backend]:
    cls = backend_for(path, runtime)  # the suffix first: a wrong kind of file says so even if missing
    if not path.exists():
        raise ModelFileError(f"model file {path} does not exist")
    if path.is_dir():
        raise ModelFileError(f"model file {path} is a directory, not a file")
    return cls


def _known_options(cls: type, options: dict) -> dict:
    """``options`` when ``cls`` takes them all; else one sentence instead of a TypeError."""
    import inspect

    takes = set(inspect.signature(cls.__init__).parameters) - {"self", "path", "model", "device"}
    unknown = sorted(set(options) - takes)
    if unknown:
        raise ConfigError(f"option(s) {', '.join(unknown)} do not apply to {cls.name} models; "
                          f"they take {', '.join(sorted(takes)) or 'none'}")
    return options
