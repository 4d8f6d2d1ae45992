"""What this machine offers TensorRT: the ``tensorrt`` module, a GPU, its driver (design.md §3).

Every TensorRT import in csrinfer goes through :func:`import_tensorrt`, so ``import csrinfer``
works without TensorRT and a missing install is one sentence that says how to install it.
Facts about the GPU come from PyTorch when it has CUDA, else from cuda-python, the way NVIDIA's
own samples query the device since TensorRT 10.13 (samples/python/common_runtime.py).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

from csrinfer.errors import BackendUnavailableError

INSTALL_HINT = ("pip install 'csrinfer[trt]' --extra-index-url https://pypi.nvidia.com "
                "(TensorRT's builder libraries come from NVIDIA's package index, not PyPI)")
MIN_VERSION = (10, 9)  # ahead-of-time plugins (tensorrt.plugin.aot_impl) arrived in 10.9


def import_tensorrt():
    """The ``tensorrt`` module, or :class:`BackendUnavailableError` saying how to install it."""
    try:
        import tensorrt
    except ImportError as e:  # also raised when sys.modules["tensorrt"] is None
        detail = "" if getattr(e, "name", None) == "tensorrt" else f" ({e})"
        raise BackendUnavailableError(f"TensorRT is not installed{detail}: {INSTALL_HINT}") from None
    if parse_version(tensorrt.__version__) < MIN_VERSION:
        raise BackendUnavailableError(
            f"TensorRT {tensorrt.__version__} is installed but csrinfer needs TensorRT "
            f"{'.'.join(map(str, MIN_VERSION))} or later (ahead-of-time plugins): {INSTALL_HINT} --upgrade")
    return tensorrt


def parse_version(text: str) -> tuple[int, ...]:
    """'10.13.0.35' -> (10, 13, 0, 35); non-numeric parts end the tuple."""
    out = []
    for part in str(text).split("."):
        digits = re.match(r"\d*", part).group()
        if not digits:
            break
        out.append(int(digits))
        if digits != part:
            break
    return tuple(out)


@dataclass(frozen=True)
class Gpu:
    """The CUDA device work runs on."""

    index: int
    name: str
    compute_capability: tuple[int, int]


def gpu(index: int = 0) -> Gpu:
    """The GPU ``index``, or :class:`BackendUnavailableError` when there is none."""
    found = _torch_gpu(index) or _cuda_python_gpu(index)
    if found is None:
        raise BackendUnavailableError(
            "TensorRT needs an NVIDIA GPU and none is visible here (no CUDA device found; check the "
            "NVIDIA driver with nvidia-smi and CUDA_VISIBLE_DEVICES)")
    return found


def driver_cuda_version() -> tuple[int, int] | None:
    """The CUDA version the installed driver supports, e.g. (12, 8); None without a driver."""
    try:
        from cuda.bindings import driver
    except ImportError:  # torch reports its own CUDA runtime's version, not the driver's
        return None
    try:
        (err,) = driver.cuInit(0)
        if int(err) != 0:
            return None
        err, version = driver.cuDriverGetVersion()
    except Exception:  # no libcuda.so: cuda-python raises from its loader
        return None
    if int(err) != 0:
        return None
    return version // 1000, (version % 1000) // 10


def _torch_gpu(index: int) -> Gpu | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available() or index >= torch.cuda.device_count():
        return None
    return Gpu(index, torch.cuda.get_device_name(index), tuple(torch.cuda.get_device_capability(index)))


def _cuda_python_gpu(index: int) -> Gpu | None:
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        return None
    try:
        err, count = cudart.cudaGetDeviceCount()
        if int(err) != 0 or index >= count:
            return None
        err, props = cudart.cudaGetDeviceProperties(index)
        if int(err) != 0:
            return None
    except Exception:  # no driver library at all
        return None
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    return Gpu(index, name.rstrip("\x00"), (int(props.major), int(props.minor)))


def make_logger(trt, verbose: bool = False):
    """A trt.ILogger that prints warnings and errors (everything when verbose) and keeps the errors."""

    class Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)  # pybind11 trampolines need the base __init__ (Polygraphy does so)
            self.errors: list[str] = []

        def log(self, severity, msg):
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                self.errors.append(msg)
            if verbose or severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR,
                                       trt.ILogger.Severity.WARNING):
                print(f"[TensorRT] {severity.name}: {msg}", file=sys.stderr, flush=True)

        def first_error(self) -> str:
            return self.errors[0].strip() if self.errors else ""

    return Logger()
