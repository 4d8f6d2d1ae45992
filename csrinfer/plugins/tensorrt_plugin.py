"""The TensorRT plugin ``csrinfer::D2SFused`` (design.md §3) on the Quick Deployable Plugin API.

``tensorrt.plugin`` (TensorRT >= 10.9) describes a plugin with decorated Python functions:

- ``register``: output shape and type, x [N, C, H, W] -> y [N, C/4, 2H, 2W], the dtype of x;
- ``autotune``: the type combinations TensorRT may pick, all four tensors float32 or all float16;
- ``aot_impl``: ahead of time, the kernel's PTX and how to launch it. TensorRT stores both in the
  engine and launches the kernel itself, so a built engine runs without Python and without this
  module (``trtexec --loadEngine`` or a C++ runtime can load it). There is deliberately no JIT
  ``impl``: the engine must never call back into Python.

The kernel is ``csrinfer/plugins/d2s_fused.cu``, compiled to PTX by NVRTC (csrinfer/plugins/ptx.py)
and launched with the geometry of csrinfer/plugins/launch.py, the helper the PyTorch op uses too.
TensorRT passes an AOT kernel its tensor inputs, then the int32 scalars returned by ``aot_impl``,
then its outputs ("extra_args: ... located after the tensor inputs and before the tensor
outputs", tensorrt.plugin.aot_impl API reference), so the kernel's entry points are compiled here
with that argument order (:data:`TRT_ARG_ORDER`). AOT plugins serialize no attributes, which is
why the depthwise weights and bias arrive as inputs and the sizes as int32 scalars.

Nothing here has run under TensorRT on this project's machines; the kernel, its PTX and the
launch geometry used here are checked without TensorRT (tests/plugins/test_tensorrt_plugin.py and
the GPU script benchmarks/gpu_trt_plugin.py).
"""

# No `from __future__ import annotations` in this module: tensorrt.plugin checks the annotations
# of the decorated functions as classes (issubclass(annotation, TensorDesc)); postponed
# evaluation would hand it strings.

import re
from typing import List, Tuple, Union

from csrinfer.errors import BackendUnavailableError
from csrinfer.contract.graph import DOMAIN, OP_TYPE
from csrinfer.plugins import launch

PLUGIN_ID = f"{DOMAIN}::{OP_TYPE}"
#: x, weight, bias, y: all float32 or all float16 ("|" ties the positions together; AutoTuneCombination docs)
IO_TYPES = "FP32|FP16, FP32|FP16, FP32|FP16, FP32|FP16"
#: TensorRT's AOT calling convention: tensor inputs, int32 scalars, tensor outputs.
TRT_ARG_ORDER = ("x", "weight", "bias", "N", "C", "H", "W", "out")
#: Vector loads need 16-byte aligned tensors; TensorRT documents no such alignment for plugin I/O,
#: so the plugin uses the scalar variants of the kernel.
VECTOR_WIDTH = 1

# The .cu defines its entry points through D2S_ENTRY unless it is already defined; this one gives
# them TensorRT's argument order around the same kernel body.
_TRT_ENTRY = r"""
#define D2S_ENTRY(NAME, T, V, R)                                                                     \
    extern "C" __global__ void __launch_bounds__(D2S_BLOCK)                                          \
        NAME(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b,              \
             int N, int C, int H, int W, T* __restrict__ out) {                                      \
        d2s_fused_body<T, V, R>(x, w, b, out, N, C, H, W);                                           \
    }
"""

_state = {"registered": False, "arch": None, "ptx": {}}


def cdiv(a, b):
    """Ceiling division written with + and // only, so it works on ints and on tensorrt.plugin ShapeExprs."""
    return (a + (b - 1)) // b


def aot_launch(N, C, H, W, dtype: str, rows: int):
    """Kernel entry, grid_x, block_x and int32 scalar arguments for x [N, C, H, W].

    N, C, H, W are ints or symbolic ShapeExprs (dynamic shapes); the arithmetic is the one of
    :func:`csrinfer.plugins.launch.launch_params`, which tests compare it against.
    """
    threads = N * (C // 4) * cdiv(H, rows) * (W // VECTOR_WIDTH)
    return launch.kernel_name(dtype, VECTOR_WIDTH, rows), cdiv(threads, launch.BLOCK), launch.BLOCK, (N, C, H, W)


def rows_for(N, C, H, W) -> int:
    """Rows per thread: the launch helper's choice when the shape is known at build time, else 1."""
    dims = [_constant(d) for d in (N, C, H, W)]
    if any(d is None for d in dims):
        return 1
    n, c, h, w = dims
    return launch.rows_per_thread(n * (c // 4) * h * (w // VECTOR_WIDTH))


def kernel_source() -> str:
    """d2s_fused.cu with entry points in TensorRT's argument order."""
    from csrinfer.plugins.ptx import SOURCE_PATH

    source = SOURCE_PATH.read_text()
    if tuple(launch.ARG_ORDER) == TRT_ARG_ORDER:
        return source
    return _TRT_ENTRY + source


def plugin_ptx(arch: str | None = None) -> str:
    """PTX of :func:`kernel_source` for ``arch`` (default: this GPU's), checked against the driver."""
    from csrinfer.plugins.ptx import PORTABLE_ARCH, KernelCompileError, compile_ptx, default_arch, normalize_arch

    arch = normalize_arch(arch or default_arch())
    if arch not in _state["ptx"]:
        try:
            ptx = compile_ptx(source=kernel_source(), arch=arch)
        except KernelCompileError:  # NVRTC older than the GPU: the portable PTX still runs on it
            ptx = compile_ptx(source=kernel_source(), arch=PORTABLE_ARCH)
        check_ptx_driver(ptx)
        _state["ptx"][arch] = ptx
    return _state["ptx"][arch]


def ptx_isa_version(ptx: str) -> str:
    """The '.version X.Y' directive of a PTX text."""
    m = re.search(r"^\s*\.version\s+(\d+\.\d+)", ptx, re.MULTILINE)
    if not m:
        raise ValueError("PTX text has no .version directive")
    return m.group(1)


def check_ptx_driver(ptx: str, driver: tuple[int, int] | None = None) -> None:
    """Raise if the NVIDIA driver is too old to load ``ptx`` (it JIT-compiles the PTX at engine load).

    NVRTC writes the PTX ISA of its own CUDA release; a driver for an older CUDA rejects it
    (CUDA_ERROR_UNSUPPORTED_PTX_VERSION) only when the engine runs, so it is checked here first.
    ``driver`` defaults to what cuDriverGetVersion reports; without a driver nothing is checked.
    """
    from csrinfer.tensorrt_env import driver_cuda_version

    driver = driver if driver is not None else driver_cuda_version()
    if driver is None:
        return
    isa = ptx_isa_version(ptx)
    need = _min_cuda_for_ptx(isa)
    if need is not None and tuple(driver) < need:
        raise BackendUnavailableError(
            f"the D2SFused kernel's PTX (ISA {isa}, from NVRTC {'.'.join(map(str, need))}) needs an NVIDIA driver "
            f"for CUDA {need[0]}.{need[1]} or newer, but this driver supports CUDA {driver[0]}.{driver[1]}: update "
            f"the driver, or install the cuda-python matching it (pip install 'cuda-python<{driver[0] + 1}')")


def register(arch: str | None = None) -> None:
    """Register ``csrinfer::D2SFused`` with TensorRT (once per process) and set the PTX's arch.

    Call before parsing an ONNX graph with D2SFused nodes. ``arch`` is the PTX target, e.g.
    "compute_80" for hardware-compatible engines (PTX runs on that arch and later).
    """
    from csrinfer.tensorrt_env import import_tensorrt

    trt = import_tensorrt()
    try:
        import tensorrt.plugin as trtp
    except ImportError:
        trtp = None
    if trtp is None or not hasattr(trtp, "aot_impl"):
        raise BackendUnavailableError(
            f"the plugin {PLUGIN_ID} cannot be registered: TensorRT {trt.__version__} has no "
            f"tensorrt.plugin.aot_impl (ahead-of-time plugins need TensorRT 10.9 or later)")
    _state["arch"] = arch
    plugin_ptx(arch)  # compile and check against the driver now, not inside TensorRT's build
    if not _state["registered"]:
        _define(trt, trtp)
        _state["registered"] = True


def _define(trt, trtp) -> None:
    """The decorated functions; their parameter names and annotations are the plugin's schema."""

    @trtp.register(PLUGIN_ID)
    def d2s_fused_desc(x: trtp.TensorDesc, weight: trtp.TensorDesc, bias: trtp.TensorDesc) -> trtp.TensorDesc:
        s = x.shape_expr
        return trtp.from_shape_expr((s[0], s[1] // 4, s[2] * 2, s[3] * 2), dtype=x.dtype)

    @trtp.autotune(PLUGIN_ID)
    def d2s_fused_autotune(x: trtp.TensorDesc, weight: trtp.TensorDesc, bias: trtp.TensorDesc,
                           outputs: Tuple[trtp.TensorDesc]) -> List[trtp.AutoTuneCombination]:
        return [trtp.AutoTuneCombination(IO_TYPES, "LINEAR")]

    @trtp.aot_impl(PLUGIN_ID)
    def d2s_fused_aot_impl(x: trtp.TensorDesc, weight: trtp.TensorDesc, bias: trtp.TensorDesc,
                           outputs: Tuple[trtp.TensorDesc], tactic: int
                           ) -> Tuple[Union[str, bytes], Union[str, bytes], trtp.KernelLaunchParams, trtp.SymIntExprs]:
        dims = [x.shape_expr[i] for i in range(4)]
        dtype = "float16" if x.dtype == trt.float16 else "float32"
        name, grid_x, block_x, scalars = aot_launch(*dims, dtype=dtype, rows=rows_for(*dims))
        params = trtp.KernelLaunchParams()
        params.grid_x = grid_x
        params.block_x = block_x
        params.shared_mem = 0
        extra = trtp.SymIntExprs.from_tuple([trtp.SymInt32(v) for v in scalars])
        return name, plugin_ptx(_state["arch"]), params, extra


def _constant(d):
    """An int for an int or a build-time-constant ShapeExpr, else None."""
    if isinstance(d, int):
        return d
    try:
        if not getattr(d, "is_fake", False) and d.is_constant:
            return int(d.constant_value())
    except RuntimeError:  # fake expressions (outside a shape context) have no value
        pass
    return None


def _min_cuda_for_ptx(isa: str) -> tuple[int, int] | None:
    """The first CUDA release whose driver loads PTX ISA ``isa`` (PTX ISA release history)."""
    try:
        from cuda.bindings.utils import get_minimal_required_cuda_ver_from_ptx_ver

        version = get_minimal_required_cuda_ver_from_ptx_ver(isa)
        return version // 1000, (version % 1000) // 10
    except (ImportError, ValueError):
        # Since PTX ISA 7.0 the major is the CUDA major minus 4 and the minor follows CUDA's
        # (8.6 skipped CUDA 12.6: ISA 8.6 is CUDA 12.7); a newer ISA than cuda-python knows
        # maps the same way.
        major, minor = (int(v) for v in isa.split("."))
        if major < 7:
            return None
        if (major, minor) >= (8, 6) and major == 8:
            minor += 1
        return major + 4, minor
