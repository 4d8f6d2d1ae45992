"""How to launch ``d2s_fused.cu`` (design.md §3): the one place every host reads it from.

The kernel knows nothing of PyTorch or TensorRT (mmdeploy's habit): plain pointers and int32
sizes. The PyTorch op (``torch_op.py``) and the TensorRT plugin both call
:func:`launch_params` and pass the arguments in :data:`ARG_ORDER`, so they launch the same
PTX the same way.

Example:
    >>> p = launch_params(1, 256, 25, 42, "float16")
    >>> p.kernel, p.grid, p.block, p.shared_mem
    ('d2s_fused_f16_v2_r1', (132, 1, 1), (256, 1, 1), 0)
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

KERNEL_SOURCE = "d2s_fused.cu"
BLOCK = 256  # D2S_BLOCK in the .cu; the kernels' __launch_bounds__
#: Kernel arguments, in order: x, weight, bias, out are device pointers (T*); N, C, H, W int32.
ARG_ORDER = ("x", "weight", "bias", "out", "N", "C", "H", "W")
DTYPES = {"float32": ("f32", 4), "float16": ("f16", 2)}  # dtype name -> (kernel suffix, bytes)
VECTOR_WIDTHS = {"float32": (4, 2, 1), "float16": (8, 4, 2, 1)}  # widest first: 16-byte accesses
ROWS_PER_THREAD = (1, 2, 4)
INT32_MAX = 2**31 - 1


class LaunchParams(NamedTuple):
    """What a host needs to launch the kernel: entry point, 1-D grid and block, dynamic shared memory."""

    kernel: str
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    shared_mem: int


def kernel_name(dtype: str, vec: int, rows: int) -> str:
    return f"d2s_fused_{DTYPES[dtype][0]}_v{vec}_r{rows}"


def all_kernel_names() -> list[str]:
    """Every entry point ``d2s_fused.cu`` defines."""
    return [kernel_name(d, v, r) for d in DTYPES for v in sorted(VECTOR_WIDTHS[d]) for r in ROWS_PER_THREAD]


def dtype_name(dtype) -> str:
    """'float32' / 'float16' from a string, a torch dtype or a numpy dtype."""
    name = str(dtype).replace("torch.", "")
    name = {"half": "float16", "float": "float32"}.get(name, name)
    if name not in DTYPES:
        raise ValueError(f"d2s_fused supports float32 and float16, not {dtype}")
    return name


def vector_width(W: int, dtype: str, aligned: bool = True) -> int:
    """Widest V (elements per access, at most 16 bytes) that divides W; 1 if pointers are not aligned."""
    if not aligned:
        return 1
    return next(v for v in VECTOR_WIDTHS[dtype] if W % v == 0)


def rows_per_thread(items: int) -> int:
    """R: more rows per thread cuts cache re-reads ((R+1)/R) but needs enough threads to fill
    the GPU. ``items`` = N * Co * H * (W / V), the number of threads at R = 1."""
    if items >= 1 << 20:
        return 4
    if items >= 1 << 17:
        return 2
    return 1


@lru_cache(maxsize=512)  # called on every launch; pure
def launch_params(N: int, C: int, H: int, W: int, dtype, aligned: bool = True,
                  vec: int | None = None, rows: int | None = None) -> LaunchParams:
    """Launch configuration for x [N, C, H, W] -> out [N, C/4, 2H, 2W].

    Args:
        dtype: 'float32' or 'float16' (or the torch/numpy dtype).
        aligned: all four pointers are 16-byte aligned (any fresh allocation is); False forces V = 1.
        vec, rows: override the vector width and rows per thread (benchmarks sweep them).
    """
    dtype = dtype_name(dtype)
    if min(N, C, H, W) < 1 or C % 4:
        raise ValueError(f"d2s_fused needs N, C, H, W >= 1 and C divisible by 4, got {(N, C, H, W)}")
    if max(N, C, 2 * H, 2 * W) > INT32_MAX:  # offsets inside the kernel are 64-bit; sizes are int32
        raise ValueError(f"d2s_fused: tensor {(N, C, H, W)} is too large for int32 sizes")
    if vec is not None and vec > 1 and not aligned:
        raise ValueError(f"vector width {vec} needs 16-byte-aligned pointers")
    v = vec if vec is not None else vector_width(W, dtype, aligned)
    if v not in VECTOR_WIDTHS[dtype] or W % v:
        raise ValueError(f"vector width {v} does not divide W={W} or is not one of {VECTOR_WIDTHS[dtype]}")
    items = N * (C // 4) * H * (W // v)
    r = rows if rows is not None else rows_per_thread(items)
    if r not in ROWS_PER_THREAD:
        raise ValueError(f"rows per thread must be one of {ROWS_PER_THREAD}, got {r}")
    threads = N * (C // 4) * (-(-H // r)) * (W // v)
    blocks = -(-threads // BLOCK)
    if blocks > INT32_MAX:
        raise ValueError(f"d2s_fused: {(N, C, H, W)} needs more blocks than a 1-D grid holds")
    return LaunchParams(kernel_name(dtype, v, r), (blocks, 1, 1), (BLOCK, 1, 1), 0)


def output_shape(N: int, C: int, H: int, W: int) -> tuple[int, int, int, int]:
    return N, C // 4, 2 * H, 2 * W


def bytes_moved(N: int, C: int, H: int, W: int, dtype) -> int:
    """Fewest bytes the op must move through device memory: input read once, output written
    once (the same count), weights and bias once."""
    size = DTYPES[dtype_name(dtype)][1]
    return size * (2 * N * C * H * W + (C // 4) * 10)
