"""Launch the TensorRT plugin's kernel the way TensorRT would, on one NVIDIA GPU, without TensorRT (issue 6).

TensorRT cannot be installed on the machines this project runs on, so this script checks what
can be checked of the TensorRT path on a bare GPU:

1. the PTX that csrinfer::D2SFused's aot_impl returns (csrinfer/plugins/tensorrt_plugin.py) is
   accepted by this GPU's driver (the plugin's own PTX-vs-driver guard runs first);
2. launched with aot_impl's grid, block and int32 scalars, in TensorRT's AOT argument order
   (inputs, scalars, outputs), it computes the reference (float64) on fresh random inputs, with
   the output poisoned with NaN first: the paper's D2S shapes at 1344x800 (x = [B,256,25,42] and
   [B,256,50,84], B = 1 and 8), odd sizes, float32 and float16, every rows-per-thread variant;
3. the TensorRT backend's two I/O paths (PyTorch CUDA tensors; cuda-python allocations) move
   data to the GPU and back unchanged;
4. for the record: time of the plugin's scalar kernel (V = 1) against the kernel's own fastest
   variant and against PyTorch's pixel_shuffle + grouped conv2d (CUDA events, median).

Writes JSON (GPU, driver, date, exact command, every check); exit code 1 if a check fails.

    PYTHONPATH=$PWD python3 benchmarks/gpu_trt_plugin.py --out $OUT/gpu_trt_plugin.json
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import platform
import shlex
import statistics
import sys
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from csrinfer import atomic  # noqa: E402
from csrinfer.model.d2s import d2s_fused_reference  # noqa: E402
from csrinfer.plugins import launch  # noqa: E402
from csrinfer.plugins import tensorrt_plugin as tp  # noqa: E402
from csrinfer.plugins.torch_op import cuda_check  # noqa: E402

PAPER_SHAPES = [(1, 256, 25, 42), (1, 256, 50, 84), (8, 256, 25, 42), (8, 256, 50, 84)]
ODD_SHAPES = [(3, 8, 7, 5), (2, 12, 1, 1), (1, 256, 13, 17), (1, 4, 2, 3), (2, 32, 9, 24)]
TOLERANCE = {"float32": 1e-5, "float16": 2e-3}
TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16}


def load_plugin_ptx(arch: str):
    """The plugin's PTX (checked against the driver by plugin_ptx) in torch's primary context."""
    from cuda.bindings import driver

    text = tp.plugin_ptx(arch)
    torch.cuda.init()
    cuda_check(driver.cuInit(0), "cuInit")
    ctx = cuda_check(driver.cuDevicePrimaryCtxRetain(cuda_check(driver.cuDeviceGet(0), "cuDeviceGet")),
                     "cuDevicePrimaryCtxRetain")
    cuda_check(driver.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
    image = ctypes.create_string_buffer(text.encode())
    module = cuda_check(driver.cuModuleLoadData(ctypes.addressof(image)), f"cuModuleLoadData ({arch})")
    return driver, module, text


def launch_as_tensorrt(driver, module, x, w, b, out, rows=None):
    """aot_impl's kernel, grid, block and scalars; arguments in TensorRT's AOT order."""
    n, c, h, wd = x.shape
    dtype = "float16" if x.dtype == torch.float16 else "float32"
    rows = rows or tp.rows_for(n, c, h, wd)
    name, grid_x, block_x, scalars = tp.aot_launch(n, c, h, wd, dtype=dtype, rows=rows)
    fn = cuda_check(driver.cuModuleGetFunction(module, name.encode()), f"cuModuleGetFunction({name})")
    values = [ctypes.c_void_p(t.data_ptr()) for t in (x, w, b)] + [ctypes.c_int(v) for v in scalars]
    values.append(ctypes.c_void_p(out.data_ptr()))
    params = (ctypes.c_void_p * len(values))(*[ctypes.addressof(v) for v in values])
    stream = torch.cuda.current_stream().cuda_stream
    cuda_check(driver.cuLaunchKernel(fn, grid_x, 1, 1, block_x, 1, 1, 0, driver.CUstream(stream),
                                     ctypes.addressof(params), 0), f"cuLaunchKernel({name})")
    return name


def check_correctness(driver, module) -> list[dict]:
    results = []
    gen = torch.Generator(device="cuda").manual_seed(0)
    for shape in PAPER_SHAPES + ODD_SHAPES:
        for dtype in ("float32", "float16"):
            for rows in sorted({tp.rows_for(*shape), *launch.ROWS_PER_THREAD}):
                n, c, h, w = shape
                td = TORCH_DTYPES[dtype]
                x = torch.randn(shape, generator=gen, device="cuda").to(td)
                wt = torch.randn(c // 4, 1, 3, 3, generator=gen, device="cuda").to(td)
                bias = torch.randn(c // 4, generator=gen, device="cuda").to(td)
                out = torch.full((n, c // 4, 2 * h, 2 * w), float("nan"), device="cuda", dtype=td)
                name = launch_as_tensorrt(driver, module, x, wt, bias, out, rows)
                torch.cuda.synchronize()
                want = d2s_fused_reference(x.double(), wt.double(), bias.double())
                err = ((out.double() - want).abs().max() / want.abs().max().clamp(min=1e-12)).item()
                ok = bool(torch.isfinite(out).all().item()) and err <= TOLERANCE[dtype]
                results.append({"shape": list(shape), "dtype": dtype, "rows": rows, "kernel": name,
                                "chosen_by_aot_impl": rows == tp.rows_for(*shape), "rel_error": err, "ok": ok})
    return results


def check_backend_io() -> dict:
    """The TensorRT backend's buffers: numpy -> device -> numpy through both I/O classes."""
    from csrinfer.runtime.backends.tensorrt import _CudaPythonIO, _TorchIO

    data = np.random.default_rng(1).standard_normal((2, 3, 40, 56)).astype(np.float32) * 255
    out = {}
    for name, io in (("torch", _TorchIO("cuda:0")), ("cuda-python", _CudaPythonIO(0))):
        x = io.upload(data, np.dtype(np.float32))
        result = io.finish({"images": x}, keep=x)["images"]
        back = result.cpu().numpy() if hasattr(result, "cpu") else result
        ptr_ok = io.pointer(x) != 0 and isinstance(io.stream_handle, int)
        out[name] = {"round_trip_equal": bool(np.array_equal(back, data)), "pointer_and_stream_ok": ptr_ok}
    return out


def time_ms(fn, iters=100) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(10):
        fn()
    times = []
    for _ in range(iters):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def timings(driver, module) -> list[dict]:
    from csrinfer.plugins.torch_op import launch as kernel_launch

    rows = []
    for shape in [(8, 256, 50, 84), (1, 256, 50, 84)]:
        for dtype in ("float32", "float16"):
            td = TORCH_DTYPES[dtype]
            n, c, h, w = shape
            x = torch.randn(shape, device="cuda").to(td)
            wt, bias = torch.randn(c // 4, 1, 3, 3, device="cuda").to(td), torch.randn(c // 4, device="cuda").to(td)
            out = torch.empty(n, c // 4, 2 * h, 2 * w, device="cuda", dtype=td)
            rows.append({"shape": list(shape), "dtype": dtype,
                         "plugin_v1_ms": time_ms(lambda: launch_as_tensorrt(driver, module, x, wt, bias, out)),
                         "kernel_best_variant_ms": time_ms(lambda: kernel_launch(x, wt, bias, out)),
                         "torch_pixel_shuffle_conv_ms": time_ms(
                             lambda: F.conv2d(F.pixel_shuffle(x, 2), wt, bias, padding=1, groups=c // 4))})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/gpu_trt_plugin.json")
    args = parser.parse_args()
    from csrinfer.plugins.ptx import normalize_arch
    from csrinfer.tensorrt_env import driver_cuda_version, gpu

    device = gpu(0)
    report = {"what": "TensorRT plugin kernel launched as TensorRT would (no TensorRT installed)",
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "command": " ".join(shlex.quote(a) for a in sys.argv), "host": platform.node(),
              "gpu": device.name, "compute_capability": list(device.compute_capability),
              "driver_cuda": list(driver_cuda_version() or []), "torch": torch.__version__}
    ok = True
    try:
        arch = normalize_arch(device.compute_capability)
        driver, module, text = load_plugin_ptx(arch)
        report["ptx"] = {"arch": arch, "isa": tp.ptx_isa_version(text),
                         "min_cuda_for_isa": list(tp._min_cuda_for_ptx(tp.ptx_isa_version(text))),
                         "driver_guard": "passed"}
        report["correctness"] = check_correctness(driver, module)
        ok &= all(r["ok"] for r in report["correctness"])
        report["backend_io"] = check_backend_io()
        ok &= all(all(v.values()) for v in report["backend_io"].values())
        report["timings_ms"] = timings(driver, module)
    except Exception:  # the report says what broke; the exit code says it broke
        report["error"] = traceback.format_exc()
        ok = False
    report["all_checks_passed"] = bool(ok)
    atomic.write_json(args.out, report)
    bad = [r for r in report.get("correctness", []) if not r["ok"]]
    print(f"{device.name}: {len(report.get('correctness', []))} launches, {len(bad)} failed; "
          f"backend I/O {report.get('backend_io')}; all passed: {ok}")
    for t in report.get("timings_ms", []):
        print(f"  {t['dtype']} {t['shape']}: plugin V=1 {t['plugin_v1_ms']:.4f} ms, kernel best "
              f"{t['kernel_best_variant_ms']:.4f} ms, torch {t['torch_pixel_shuffle_conv_ms']:.4f} ms")
    if "error" in report:
        print(report["error"], file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
