"""The kernel source builds for every GPU generation we support, warning-free (design.md §3).

The TensorRT plugin embeds this PTX and the PyTorch op loads it, so CI compiles the very
source they use: with nvcc for each target (errors and warnings fail), assembled by ptxas
(register spills fail), and with NVRTC, the compiler the op uses at run time.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from csrinfer.plugins.launch import all_kernel_names
from csrinfer.plugins.ptx import KernelCompileError, SOURCE_PATH, compile_ptx, normalize_arch, nvcc_ptx

ARCHS = ["sm_75", "sm_80", "sm_86", "sm_89", "sm_90"]
needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")


def _nvrtc_available() -> bool:
    try:
        from cuda.bindings import nvrtc  # noqa: F401
    except ImportError:
        return False
    return True


needs_nvrtc = pytest.mark.skipif(not _nvrtc_available(), reason="cuda-python (NVRTC) is not installed")


def entries(ptx: str) -> set[str]:
    return set(re.findall(r"\.entry (\w+)\(", ptx))


@needs_nvcc
@pytest.mark.parametrize("arch", ARCHS)
def test_nvcc_builds_ptx_without_warnings_and_ptxas_assembles_it_without_spills(arch, tmp_path):
    ptx = nvcc_ptx(SOURCE_PATH.read_text(), normalize_arch(arch))  # raises on any error or warning
    assert entries(ptx) == set(all_kernel_names())
    assert f".target {arch}" in ptx
    if shutil.which("ptxas") is None:
        pytest.skip("ptxas is not installed")
    (tmp_path / "k.ptx").write_text(ptx)
    proc = subprocess.run(["ptxas", f"-arch={arch}", "--warn-on-spills", "--warn-on-local-memory-usage",
                           "--warning-as-error", "-o", str(tmp_path / "k.cubin"), str(tmp_path / "k.ptx")],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


@needs_nvrtc
@pytest.mark.parametrize("arch", ["compute_75", "sm_90"])
def test_nvrtc_builds_the_same_entry_points(arch, tmp_path, monkeypatch):
    monkeypatch.setenv("CSRINFER_CACHE", str(tmp_path))
    ptx = compile_ptx(arch=arch)
    assert entries(ptx) == set(all_kernel_names())
    assert f".target {normalize_arch(arch).replace('compute', 'sm')}" in ptx
    assert list((tmp_path / "ptx").glob("*.ptx")), "the PTX is cached on disk"
    assert compile_ptx(arch=arch) == ptx


@needs_nvrtc
def test_a_compile_error_carries_the_compiler_log(tmp_path, monkeypatch):
    monkeypatch.setenv("CSRINFER_CACHE", str(tmp_path))
    with pytest.raises(KernelCompileError, match="expected an expression"):
        compile_ptx("__global__ void broken() { int x = ; }", arch="compute_80", use_cache=False)


@pytest.mark.parametrize("given, want", [("sm_90", "compute_90"), ("compute_86", "compute_86"), ("8.9", "compute_89"),
                                         ((7, 5), "compute_75"), ("90a", "compute_90a")])
def test_arch_spellings(given, want):
    assert normalize_arch(given) == want


def test_unknown_arch_is_one_clear_error():
    with pytest.raises(ValueError, match="unknown GPU architecture 'volta'"):
        normalize_arch("volta")
