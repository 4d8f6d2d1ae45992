"""``d2s_fused.cu`` -> PTX (design.md §3), cached on disk.

NVRTC (``cuda.bindings.nvrtc`` from cuda-python) compiles without a GPU, so CI and the
TensorRT plugin build get the very PTX the PyTorch op loads; ``nvcc`` is the fallback when
cuda-python is missing. PTX is arch-forward: PTX for compute_75 runs on every later GPU (the
driver compiles it at load), PTX for the device's own arch lets the compiler use all of it.

Example:
    >>> ptx = compile_ptx(arch="compute_90")
    >>> ".entry d2s_fused_f16_v8_r2" in ptx
    True
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from csrinfer.errors import BackendUnavailableError, CsrinferError
from csrinfer.plugins.launch import KERNEL_SOURCE

SOURCE_PATH = Path(__file__).with_name(KERNEL_SOURCE)
PORTABLE_ARCH = "compute_75"  # the oldest arch CUDA 13 compiles for
OPTIONS = ("--std=c++17",)


class KernelCompileError(CsrinferError):
    """The CUDA source did not compile; the message carries the compiler's log."""


def normalize_arch(arch) -> str:
    """'compute_XY' from 'sm_XY', 'compute_XY', 'XY', 'X.Y' or a (major, minor) tuple."""
    if isinstance(arch, tuple):
        return f"compute_{arch[0]}{arch[1]}"
    text = str(arch).strip().lower().replace(".", "")
    m = re.fullmatch(r"(?:sm_|compute_)?(\d{2,3}[a-z]?)", text)
    if not m:
        raise ValueError(f"unknown GPU architecture '{arch}'; use e.g. 'compute_90', 'sm_80' or (8, 6)")
    return f"compute_{m.group(1)}"


def default_arch() -> str:
    """The current CUDA device's arch when torch sees one, else the portable compute_75."""
    try:
        import torch

        if torch.cuda.is_available():
            return normalize_arch(torch.cuda.get_device_capability())
    except ImportError:
        pass
    return PORTABLE_ARCH


def cache_dir() -> Path:
    root = os.environ.get("CSRINFER_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "csrinfer")
    return Path(root).expanduser() / "ptx"


def compile_ptx(source: str | None = None, arch=None, use_cache: bool = True, compiler: str = "auto") -> str:
    """PTX text of ``source`` (default: ``d2s_fused.cu``) for ``arch`` (default: :func:`default_arch`).

    Args:
        compiler: 'nvrtc', 'nvcc' or 'auto' (NVRTC, else nvcc).
    Raises:
        BackendUnavailableError: neither NVRTC (cuda-python) nor nvcc is available.
        KernelCompileError: the source does not compile; the compiler's log is in the message.
    """
    source = SOURCE_PATH.read_text() if source is None else source
    arch = normalize_arch(arch or default_arch())
    backend = _pick_compiler(compiler)
    key = hashlib.sha256("\0".join([source, arch, backend, _compiler_version(backend), *OPTIONS]).encode()).hexdigest()
    cached = cache_dir() / f"d2s_{arch}_{key[:20]}.ptx"
    if use_cache and cached.is_file():
        return cached.read_text()
    ptx = _nvrtc(source, arch) if backend == "nvrtc" else nvcc_ptx(source, arch)
    if use_cache:
        _write_cache(cached, ptx)
    return ptx


def _pick_compiler(compiler: str) -> str:
    if compiler not in ("auto", "nvrtc", "nvcc"):
        raise ValueError(f"compiler must be 'auto', 'nvrtc' or 'nvcc', got '{compiler}'")
    if compiler in ("auto", "nvrtc"):
        try:
            from cuda.bindings import nvrtc

            nvrtc.nvrtcVersion()  # loads libnvrtc: cuda-python can be installed without it
            return "nvrtc"
        except Exception as exc:  # ImportError, or the library not found
            if compiler == "nvrtc":
                raise BackendUnavailableError(
                    f"NVRTC is not available ({type(exc).__name__}): install cuda-python "
                    "(pip install 'csrinfer[cuda]')") from None
    if shutil.which("nvcc") is None:
        raise BackendUnavailableError(
            "cannot compile the D2S kernel: neither cuda-python (NVRTC) nor nvcc is installed")
    return "nvcc"


def _compiler_version(backend: str) -> str:
    if backend == "nvrtc":
        from cuda.bindings import nvrtc

        _, major, minor = nvrtc.nvrtcVersion()
        return f"nvrtc {major}.{minor}"
    out = subprocess.run(["nvcc", "--version"], capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1] if out.stdout else "nvcc"


def _check(result, what: str, prog=None):
    """Unwrap a cuda-python NVRTC call's (status, *values); raise with the program log on failure."""
    from cuda.bindings import nvrtc

    status, *values = result
    if status != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        log = _program_log(prog) if prog is not None else ""
        raise KernelCompileError(f"NVRTC {what} failed ({status.name})" + (f":\n{log}" if log else ""))
    return values[0] if len(values) == 1 else values


def _program_log(prog) -> str:
    from cuda.bindings import nvrtc

    status, size = nvrtc.nvrtcGetProgramLogSize(prog)
    if status != nvrtc.nvrtcResult.NVRTC_SUCCESS or size <= 1:
        return ""
    buf = b" " * size
    nvrtc.nvrtcGetProgramLog(prog, buf)
    return buf.rstrip(b"\0 ").decode(errors="replace")


def _nvrtc(source: str, arch: str) -> str:
    from cuda.bindings import nvrtc

    prog = _check(nvrtc.nvrtcCreateProgram(source.encode(), KERNEL_SOURCE.encode(), 0, [], []), "create")
    try:
        opts = [f"--gpu-architecture={arch}".encode(), *(o.encode() for o in OPTIONS)]
        _check(nvrtc.nvrtcCompileProgram(prog, len(opts), opts), f"compile for {arch}", prog)
        log = _program_log(prog)
        if "warning" in log:  # the source is kept warning-free; a warning is a bug to see
            raise KernelCompileError(f"NVRTC compiled {KERNEL_SOURCE} for {arch} with warnings:\n{log}")
        size = _check(nvrtc.nvrtcGetPTXSize(prog), "PTX size")
        buf = b" " * size
        _check(nvrtc.nvrtcGetPTX(prog, buf), "get PTX")
        return buf.rstrip(b"\0").decode()
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


def nvcc_ptx(source: str, arch: str, extra: tuple[str, ...] = ()) -> str:
    """PTX through ``nvcc -ptx``, warnings as errors (CI builds every target this way)."""
    if shutil.which("nvcc") is None:
        raise BackendUnavailableError("nvcc is not on PATH")
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / KERNEL_SOURCE, Path(tmp) / "out.ptx"
        src.write_text(source)
        cmd = ["nvcc", "-ptx", f"-arch={arch}", *OPTIONS, "-Werror", "all-warnings", *extra, "-o", str(out), str(src)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or proc.stderr.strip():
            raise KernelCompileError(f"{' '.join(cmd[:4])} failed:\n{proc.stderr.strip() or proc.stdout.strip()}")
        return out.read_text()


def _write_cache(path: Path, ptx: str) -> None:
    from csrinfer import atomic

    try:
        atomic.write_text(path, ptx)
    except OSError:  # a read-only cache directory only costs a recompile next time
        pass
