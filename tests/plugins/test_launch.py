"""Launch parameters of the fused D2S kernel (csrinfer/plugins/launch.py): one place, every host."""

from __future__ import annotations

import re

import pytest
import torch

from csrinfer.plugins.launch import (ARG_ORDER, BLOCK, ROWS_PER_THREAD, VECTOR_WIDTHS, all_kernel_names,
                                     bytes_moved, launch_params, vector_width)
from csrinfer.plugins.ptx import SOURCE_PATH


def test_every_kernel_name_is_an_entry_point_of_the_source():
    entries = set(re.findall(r"^D2S_ENTRY\((\w+),", SOURCE_PATH.read_text(), flags=re.M))
    assert entries == set(all_kernel_names())


def test_block_size_and_argument_order_match_the_source():
    src = SOURCE_PATH.read_text()
    assert f"#define D2S_BLOCK {BLOCK}" in src
    signature = re.search(r"NAME\(const T\* __restrict__ x, const T\* __restrict__ w, const T\* __restrict__ b,"
                          r"\s*\\\s*T\* __restrict__ out, int N, int C, int H, int W\)", src)
    assert signature and ARG_ORDER == ("x", "weight", "bias", "out", "N", "C", "H", "W")


@pytest.mark.parametrize("dtype, W, want", [
    ("float32", 84, 4), ("float32", 42, 2), ("float32", 17, 1),
    ("float16", 96, 8), ("float16", 84, 4), ("float16", 42, 2), ("float16", 5, 1),
])
def test_widest_vector_that_divides_the_row_and_fits_16_bytes(dtype, W, want):
    assert vector_width(W, dtype) == want
    assert vector_width(W, dtype, aligned=False) == 1


@pytest.mark.parametrize("shape", [(1, 256, 25, 42), (8, 256, 50, 84), (3, 8, 7, 5), (2, 12, 1, 1), (64, 1024, 100, 168)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, "float16"])
def test_grid_covers_every_thread_once(shape, dtype):
    n, c, h, w = shape
    p = launch_params(n, c, h, w, dtype)
    m = re.fullmatch(r"d2s_fused_(f32|f16)_v(\d)_r(\d)", p.kernel)
    vec, rows = int(m.group(2)), int(m.group(3))
    threads = n * (c // 4) * -(-h // rows) * (w // vec)
    assert p.block == (BLOCK, 1, 1) and p.shared_mem == 0 and p.grid[1:] == (1, 1)
    assert p.grid[0] * BLOCK >= threads > (p.grid[0] - 1) * BLOCK
    assert w % vec == 0 and vec in VECTOR_WIDTHS[str(dtype).replace("torch.", "")] and rows in ROWS_PER_THREAD


def test_more_rows_per_thread_only_when_the_gpu_stays_full():
    assert launch_params(1, 256, 25, 42, "float32").kernel.endswith("_r1")
    assert launch_params(64, 256, 100, 168, "float32").kernel.endswith("_r4")


def test_overrides_are_checked():
    assert launch_params(1, 8, 4, 8, "float16", vec=2, rows=4).kernel == "d2s_fused_f16_v2_r4"
    with pytest.raises(ValueError, match="does not divide"):
        launch_params(1, 8, 4, 6, "float32", vec=4)
    with pytest.raises(ValueError, match="rows per thread"):
        launch_params(1, 8, 4, 8, "float32", rows=3)
    with pytest.raises(ValueError, match="16-byte-aligned"):
        launch_params(1, 8, 4, 8, "float32", aligned=False, vec=4)


@pytest.mark.parametrize("bad", [(1, 6, 4, 4), (0, 8, 4, 4), (1, 8, 0, 4)])
def test_bad_shapes_are_refused(bad):
    with pytest.raises(ValueError, match="divisible by 4"):
        launch_params(*bad, "float32")


def test_other_dtypes_are_refused():
    with pytest.raises(ValueError, match="float32 and float16"):
        launch_params(1, 8, 4, 4, torch.bfloat16)


def test_bytes_moved_counts_input_and_output_once():
    # x [1, 8, 2, 3] fp16: 48 elements in, 48 out, plus 2 x (9 weights + 1 bias).
    assert bytes_moved(1, 8, 2, 3, "float16") == 2 * (48 + 48 + 20)
