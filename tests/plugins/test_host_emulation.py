"""The kernel's index map, checked on the CPU: d2s_fused.cu compiled by the host C++ compiler.

The kernel uses no shared memory and no barriers, so running every (block, thread) of a
launch one after the other computes exactly what the GPU does. This checks the shipped
source — the shuffle index map, the halo, the border padding, every vector width and rows
per thread, the launch parameters — against the reference on random data, without a GPU.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from csrinfer.model.d2s import d2s_fused_reference
from csrinfer.plugins.launch import ROWS_PER_THREAD, VECTOR_WIDTHS, all_kernel_names, launch_params
from csrinfer.plugins.ptx import SOURCE_PATH

HARNESS = Path(__file__).with_name("d2s_host_emulation.cpp")
SANITIZE_DRIVER = Path(__file__).with_name("d2s_sanitize_driver.cpp")
SHAPES = [(3, 8, 7, 5), (2, 12, 1, 1), (1, 256, 13, 17), (2, 16, 6, 8), (1, 32, 5, 16), (2, 8, 9, 24)]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.skip("g++ is not installed")
    lib = tmp_path_factory.mktemp("d2s") / "d2s_emulation.so"
    cmd = [cxx, "-O1", "-shared", "-fPIC", "-fno-strict-aliasing", "-std=c++17", "-Wall", "-Werror",
           "-Wno-unknown-pragmas", f"-I{SOURCE_PATH.parent}", "-o", str(lib), str(HARNESS)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 and "_Float16" in proc.stderr:
        pytest.skip("this host compiler has no _Float16")
    assert proc.returncode == 0, proc.stderr
    return ctypes.CDLL(str(lib))


def run(lib, x, w, b, vec=None, rows=None):
    n, c, h, wd = x.shape
    p = launch_params(n, c, h, wd, x.dtype, vec=vec, rows=rows)
    out = torch.full((n, c // 4, 2 * h, 2 * wd), float("nan"), dtype=x.dtype)  # poisoned
    ptr = ctypes.c_void_p
    getattr(lib, p.kernel)(ctypes.c_uint(p.grid[0]), ctypes.c_uint(p.block[0]), ptr(x.data_ptr()), ptr(w.data_ptr()),
                           ptr(b.data_ptr()), ptr(out.data_ptr()), n, c, h, wd)
    return out


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-6), (torch.float16, 1e-3)])
@pytest.mark.parametrize("shape", SHAPES)
def test_every_variant_matches_the_reference(emulator, shape, dtype, tol):
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(shape, generator=g).to(dtype)
    w = torch.randn(shape[1] // 4, 1, 3, 3, generator=g).to(dtype)
    b = torch.randn(shape[1] // 4, generator=g).to(dtype)
    ref = d2s_fused_reference(x.double(), w.double(), b.double())
    name = str(dtype).replace("torch.", "")
    tried = 0
    for vec in (v for v in VECTOR_WIDTHS[name] if shape[3] % v == 0):
        for rows in ROWS_PER_THREAD:
            out = run(emulator, x, w, b, vec, rows)
            assert torch.isfinite(out).all(), f"v{vec} r{rows} left outputs unwritten"
            err = ((out.double() - ref).norm() / ref.norm()).item()
            assert err < tol, f"v{vec} r{rows}: relative error {err:.2e}"
            tried += 1
    assert tried >= 3


def test_default_launch_of_a_paper_shape(emulator):
    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(1, 256, 25, 42, generator=g), torch.randn(64, 1, 3, 3, generator=g), torch.randn(64, generator=g)
    torch.testing.assert_close(run(emulator, x, w, b), d2s_fused_reference(x, w, b), rtol=1e-5, atol=1e-5)


def test_no_out_of_bounds_or_misaligned_access_under_sanitizers(tmp_path):
    """Every entry point on small and degenerate shapes (H = 1, W = 1), buffers of the exact size,
    built with AddressSanitizer and UndefinedBehaviorSanitizer: any stray access aborts."""
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.skip("g++ is not installed")
    table = " ".join(f"X({name}, {'float' if '_f32_' in name else 'd2s_half'}, {name.split('_v')[1].split('_')[0]}, "
                     f"{name.rsplit('_r', 1)[1]})" for name in all_kernel_names())
    exe = tmp_path / "d2s_sanitize"
    cmd = [cxx, "-O1", "-g", "-std=c++17", "-fno-strict-aliasing", "-Wno-unknown-pragmas",
           "-fsanitize=address,undefined", "-fno-sanitize-recover=all", f"-DD2S_KERNELS={table}",
           f"-I{SOURCE_PATH.parent}", f"-I{HARNESS.parent}", "-o", str(exe), str(SANITIZE_DRIVER)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 and ("asan" in proc.stderr.lower() or "_Float16" in proc.stderr):
        pytest.skip(f"this host compiler cannot build with sanitizers: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert ", 0 with unwritten outputs" in run.stdout
