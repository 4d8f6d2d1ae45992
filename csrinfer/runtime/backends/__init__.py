"""Backends, one per model-file format, chosen once from the file's suffix (design.md §2).

``load_backend(path_or_model, device)`` is what ``Segmenter`` calls. The table maps a suffix
to the module and class that runs it; modules are imported only when their format is used,
so ``import csrinfer`` never needs onnxruntime or TensorRT.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from csrinfer.errors import BackendUnavailableError, ModelFileError
from csrinfer.runtime.backends.base import INPUT_NAME, OUTPUT_NAMES, Backend

__all__ = ["Backend", "BACKENDS", "INPUT_NAME", "OUTPUT_NAMES", "backend_for", "load_backend"]

# suffix -> (module, class name, what to install when the module cannot be imported)
BACKENDS = {
    ".pth": ("csrinfer.runtime.backends.torch", "TorchBackend", "torch"),
    ".pt": ("csrinfer.runtime.backends.torch", "TorchBackend", "torch"),
    ".onnx": ("csrinfer.runtime.backends.onnxruntime", "OnnxRuntimeBackend", "onnxruntime"),
    ".plan": ("csrinfer.runtime.backends.tensorrt", "TensorRTBackend", "TensorRT (pip install 'csrinfer[trt]')"),
    ".engine": ("csrinfer.runtime.backends.tensorrt", "TensorRTBackend", "TensorRT (pip install 'csrinfer[trt]')"),
}


def backend_for(path) -> type[Backend]:
    """The backend class for a model file, from its suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in BACKENDS:
        raise ModelFileError(f"model file {path} has an unknown suffix '{suffix}'; "
                             f"use one of {', '.join(BACKENDS)}")
    module_name, class_name, needs = BACKENDS[suffix]
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise BackendUnavailableError(f"cannot run {path}: its backend ({module_name}) needs {needs}, "
                                      f"which cannot be imported here ({e})") from None
    return getattr(module, class_name)


def load_backend(path_or_model, device: str | None = None, **options) -> Backend:
    """A ready backend for a model file or an in-memory ``torch.nn.Module``.

    ``options`` go to the backend's constructor (e.g. ``cfg=`` for a module, ``threads=`` for
    ONNX Runtime).
    """
    if isinstance(path_or_model, Backend):
        return path_or_model
    if not isinstance(path_or_model, (str, Path)):
        from csrinfer.runtime.backends.torch import TorchBackend

        return TorchBackend(path_or_model, device=device, **options)
    path = Path(path_or_model)
    cls = backend_for(path)  # the suffix first: a wrong kind of file says so even if missing
    if not path.exists():
        raise ModelFileError(f"model file {path} does not exist")
    if path.is_dir():
        raise ModelFileError(f"model file {path} is a directory, not a file")
    return cls(path, device=device, **options)
