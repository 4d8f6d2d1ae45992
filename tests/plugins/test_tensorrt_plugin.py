"""The TensorRT plugin csrinfer::D2SFused without TensorRT: its PTX, its launch, its schema, its errors.

TensorRT launches an ahead-of-time plugin kernel with the tensor inputs, then the int32 scalars
aot_impl returns, then the outputs (tensorrt.plugin.aot_impl reference). These tests check that
the PTX the plugin embeds has exactly that parameter list, that its launch geometry is the one
the kernel's own launcher computes (csrinfer/plugins/launch.py), and that the plugin's decorated
functions follow the documented tensorrt.plugin schema. benchmarks/gpu_trt_plugin.py launches
that PTX the way TensorRT would on a GPU.
"""

from __future__ import annotations

import re
import sys
import types
import typing

import pytest

from csrinfer.errors import BackendUnavailableError
from csrinfer.plugins import launch
from csrinfer.plugins import tensorrt_plugin as tp


@pytest.fixture(scope="module")
def ptx():
    from csrinfer.plugins.ptx import PORTABLE_ARCH, compile_ptx

    return compile_ptx(source=tp.kernel_source(), arch=PORTABLE_ARCH)


def entry_params(ptx_text: str, name: str) -> list[str]:
    m = re.search(rf"\.entry {name}\((.*?)\)", ptx_text, re.S)
    assert m, f"no entry point {name} in the PTX"
    return re.findall(r"\.param \.(\w+) ", m.group(1))


def test_every_kernel_entry_takes_inputs_then_int32_sizes_then_the_output(ptx):
    for name in launch.all_kernel_names():
        # x, weight, bias (pointers); N, C, H, W (int32); out (pointer)
        assert entry_params(ptx, name) == ["u64", "u64", "u64", "u32", "u32", "u32", "u32", "u64"], name
    assert tp.TRT_ARG_ORDER[:3] == ("x", "weight", "bias") and tp.TRT_ARG_ORDER[-1] == "out"


# Worked by hand (vector width 1, 256 threads a block): N * C/4 * H * W threads at one row each;
# 2^17 of them or more take 2 rows a thread, 2^20 or more 4; then ceil(H / rows) rows.
@pytest.mark.parametrize("shape,want_rows,want_blocks", [
    ((1, 256, 25, 42), 1, 263),  # 67200 threads -> 262.5 blocks
    ((8, 256, 50, 84), 4, 2184),  # 2150400 items; 8 * 64 * 13 * 84 = 559104 threads
    ((3, 8, 7, 5), 1, 1), ((2, 12, 1, 1), 1, 1), ((1, 4, 2, 3), 1, 1),
    ((2, 64, 200, 336), 4, 2100),  # 2150400 items; 2 * 16 * 50 * 336 = 537600 threads
])
@pytest.mark.parametrize("dtype,suffix", [("float32", "f32"), ("float16", "f16")])
def test_aot_launch_is_the_kernel_launchers_geometry(shape, want_rows, want_blocks, dtype, suffix):
    rows = tp.rows_for(*shape)
    assert rows == want_rows
    name, grid_x, block_x, scalars = tp.aot_launch(*shape, dtype=dtype, rows=rows)
    assert (name, grid_x, block_x) == (f"d2s_fused_{suffix}_v1_r{want_rows}", want_blocks, 256)
    want = launch.launch_params(*shape, dtype, vec=tp.VECTOR_WIDTH, rows=rows)  # the PyTorch op's launch
    assert (name, (grid_x, 1, 1), (block_x, 1, 1), 0) == tuple(want)
    assert scalars == shape
    n, c, h, w = shape
    assert rows == launch.rows_per_thread(n * (c // 4) * h * w)


class Symbolic:
    """A dimension only known at run time (what a dynamic shape gives aot_impl)."""

    is_fake = False
    is_constant = False


def test_dynamic_shapes_take_one_row_per_thread():
    assert tp.rows_for(Symbolic(), 256, Symbolic(), Symbolic()) == 1
    assert tp.cdiv(7, 4) == 2 and tp.cdiv(8, 4) == 2 and tp.cdiv(1, 256) == 1


def test_ptx_newer_than_the_driver_names_both_versions(ptx):
    isa = tp.ptx_isa_version(ptx)
    need = tp._min_cuda_for_ptx(isa)
    assert need >= (12, 0)  # NVRTC 12 or 13 here
    old = (need[0] - 1, 8)
    with pytest.raises(BackendUnavailableError) as e:
        tp.check_ptx_driver(ptx, driver=old)
    text = str(e.value)
    assert f"ISA {isa}" in text and f"CUDA {need[0]}.{need[1]} or newer" in text
    assert f"this driver supports CUDA {old[0]}.{old[1]}" in text
    tp.check_ptx_driver(ptx, driver=need)  # new enough: no error
    tp.check_ptx_driver(ptx, driver=(need[0] + 1, 0))


@pytest.mark.parametrize("use_cuda_python", [True, False])
def test_ptx_isa_to_cuda_release(monkeypatch, use_cuda_python):
    if not use_cuda_python:
        monkeypatch.setitem(sys.modules, "cuda.bindings.utils", None)
    assert tp._min_cuda_for_ptx("7.8") == (11, 8)
    assert tp._min_cuda_for_ptx("8.5") == (12, 5)
    assert tp._min_cuda_for_ptx("8.7") == (12, 8)  # ISA 8.6 came with CUDA 12.7
    assert tp._min_cuda_for_ptx("9.0") == (13, 0)


def test_register_without_tensorrt_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BackendUnavailableError, match="TensorRT is not installed: pip install 'csrinfer\\[trt\\]'"):
        tp.register()


def test_register_on_tensorrt_without_aot_plugins_is_refused(monkeypatch):
    fake = types.ModuleType("tensorrt")
    fake.__version__ = "10.9.0.34"  # passes the version gate, but this stand-in has no tensorrt.plugin
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setitem(sys.modules, "tensorrt.plugin", None)
    with pytest.raises(BackendUnavailableError, match="cannot be registered: TensorRT 10.9.0.34 has no "
                                                      "tensorrt.plugin.aot_impl"):
        tp.register()


# --- the decorated functions against the documented tensorrt.plugin schema -----------------------

def fake_trtp():
    """Records decorated functions and checks the schema rules of the tensorrt.plugin reference pages."""
    trtp = types.ModuleType("tensorrt.plugin")
    trtp.defs = {}

    class TensorDesc:
        def __init__(self, shape_expr=None, dtype=None):
            self.shape_expr, self.dtype = shape_expr, dtype

    class KernelLaunchParams:
        grid_x = grid_y = grid_z = block_x = block_y = block_z = 1
        shared_mem = 0

    class SymInt32:
        def __init__(self, value):
            self.value = value

    class SymIntExprs(list):
        @classmethod
        def from_tuple(cls, values):
            return cls(values)

    class AutoTuneCombination:
        def __init__(self, io_types, layouts="LINEAR"):
            self.io_types, self.layouts = io_types, layouts

    def decorator(kind):
        def wrap(plugin_id):
            def record(fn):
                trtp.defs[(plugin_id, kind)] = fn
                return fn
            return record
        return wrap

    trtp.TensorDesc, trtp.KernelLaunchParams, trtp.SymInt32, trtp.SymIntExprs = (TensorDesc, KernelLaunchParams,
                                                                                 SymInt32, SymIntExprs)
    trtp.AutoTuneCombination = AutoTuneCombination
    trtp.from_shape_expr = lambda shape, dtype: TensorDesc(tuple(shape), dtype)
    trtp.register, trtp.autotune, trtp.aot_impl = decorator("register"), decorator("autotune"), decorator("aot")
    return trtp


@pytest.fixture()
def registered(monkeypatch):
    from tests.export import fake_tensorrt

    trtp = fake_trtp()
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt)
    monkeypatch.setitem(sys.modules, "tensorrt.plugin", trtp)
    monkeypatch.setattr(fake_tensorrt, "plugin", trtp, raising=False)
    monkeypatch.setitem(tp._state, "registered", False)
    tp.register(arch="compute_75")
    return trtp


def test_decorated_functions_follow_the_tensorrt_plugin_schema(registered):
    trtp = registered
    assert set(trtp.defs) == {(tp.PLUGIN_ID, k) for k in ("register", "autotune", "aot")}  # no JIT impl
    desc, tune, aot = (trtp.defs[(tp.PLUGIN_ID, k)] for k in ("register", "autotune", "aot"))
    hints = {k: typing.get_type_hints(f) for k, f in (("desc", desc), ("tune", tune), ("aot", aot))}
    tensors = ["x", "weight", "bias"]
    # register: annotated TensorDesc inputs first, no attributes, returns a TensorDesc
    assert list(hints["desc"]) == tensors + ["return"]
    assert all(hints["desc"][t] is trtp.TensorDesc for t in tensors + ["return"])
    # autotune: (inputs..., outputs); aot_impl: (inputs..., outputs, tactic) -> 4-tuple
    assert list(hints["tune"])[:-1] == tensors + ["outputs"]
    assert list(hints["aot"])[:-1] == tensors + ["outputs", "tactic"]
    ret = typing.get_args(hints["aot"]["return"])
    assert len(ret) == 4 and ret[2] is trtp.KernelLaunchParams and ret[3] is trtp.SymIntExprs
    assert tp.PLUGIN_ID == "csrinfer::D2SFused"


@pytest.mark.parametrize("dtype_name", ["float32", "float16"])
def test_aot_impl_returns_the_ptx_and_launch_of_the_kernel(registered, dtype_name):
    from tests.export import fake_tensorrt

    trtp = registered
    dtype = getattr(fake_tensorrt, dtype_name)
    x = trtp.TensorDesc((2, 256, 25, 42), dtype)
    w, b = trtp.TensorDesc((64, 1, 3, 3), dtype), trtp.TensorDesc((64,), dtype)
    y = trtp.defs[(tp.PLUGIN_ID, "register")](x, w, b)
    assert y.shape_expr == (2, 64, 50, 84) and y.dtype == dtype
    combos = trtp.defs[(tp.PLUGIN_ID, "autotune")](x, w, b, (y,))
    assert [c.io_types for c in combos] == ["FP32|FP16, FP32|FP16, FP32|FP16, FP32|FP16"]
    name, ptx, params, extra = trtp.defs[(tp.PLUGIN_ID, "aot")](x, w, b, (y,), 0)
    # By hand: 2 * 64 * 25 * 42 = 134400 threads at one row (>= 2^17: 2 rows), so
    # 2 * 64 * 13 * 42 = 69888 threads, 273 blocks of 256.
    suffix = {"float32": "f32", "float16": "f16"}[dtype_name]
    assert name == f"d2s_fused_{suffix}_v1_r2" and f".entry {name}(" in ptx
    assert (params.grid_x, params.block_x, params.shared_mem) == (273, 256, 0)
    assert [a.value for a in extra] == [2, 256, 25, 42]
    assert tp.ptx_isa_version(ptx)


# --- the real tensorrt.plugin of TensorRT 10 and 11 (tests/tensorrt_bindings.py) -------------------

@pytest.fixture(scope="module")
def real_qdp(real_tensorrt, tmp_path_factory):
    """tests/plugins/qdp_probe.py's report: the plugin defined with the real decorators, as TensorRT sees it."""
    import json

    from tests.tensorrt_bindings import run_python

    out = tmp_path_factory.mktemp("qdp") / "report.json"
    run_python(real_tensorrt, "tests/plugins/qdp_probe.py", str(out))
    return json.loads(out.read_text())


def test_real_decorators_accept_the_definitions_and_register_the_creator(real_qdp):
    # registered under the id the ONNX node names: namespace csrinfer, name D2SFused, version 1
    assert real_qdp["registered"] == ["csrinfer::D2SFused::1"]
    assert real_qdp["lookup"] == ["D2SFused", "1", "csrinfer", True]


def test_onnx_parser_passes_no_field_and_asks_for_the_aot_plugin(real_qdp):
    """onnx-tensorrt passes a creator only the attributes it advertises; ours advertises none, so
    blocksize never reaches create_plugin (which refuses unknown fields), and aot=1 means STRICT_AOT."""
    assert real_qdp["advertised_fields"] == []
    assert real_qdp["node_attributes"] == ["aot", "blocksize", "plugin_namespace", "plugin_version"]
    assert real_qdp["plugin"] == ["_TemplateAOTPlugin", "D2SFused", "csrinfer", "1"]


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_real_descriptors_give_what_the_aot_launch_expects(real_qdp, dtype):
    calls = real_qdp["calls"][dtype]
    want_type = {"float32": "DataType.FLOAT", "float16": "DataType.HALF"}[dtype]
    assert calls["output_types"] == [want_type]  # TensorRT's get_output_data_types through register
    assert calls["output"] == ["TensorDesc", 4, want_type]
    assert calls["combinations"] == ["AutoTuneCombination"]
    # _TemplateAOTPlugin.get_launch_params: str/bytes name and PTX, KernelLaunchParams, SymIntExprs of SymInt32
    assert (calls["name_type"], calls["ptx_type"], calls["launch_params"], calls["extra_args"]) == \
        ("str", "str", True, True)
    assert calls["extra_arg_types"] == ["SymInt32"] * 4  # N, C, H, W after the three inputs (TRT_ARG_ORDER)
    assert calls["entry_in_ptx"] and calls["name"] == launch.kernel_name(dtype, tp.VECTOR_WIDTH, 1)
