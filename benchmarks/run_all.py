"""Every backend this machine has, the paper's Tables II and III, and the compute/memory floor,
measured in one run (issue 7). Writes ``<out>/<machine>.json``, ``.md`` and ``.png``.

1. **Speed grid** (``speed``): the paper model (``models/csr_d2s_r50_coco.yaml``, random
   weights made confident so that post-processing pastes its full 100 instances, as on a busy
   COCO photo — speed does not depend on the weights' values) through ``csrinfer.apps.bench``
   (image in, Instances out), at 1344x800 (H=800, W=1344: a 480x800 photo letterboxed to
   800x1333) and 640x640, batch 1 and 8, for each variant the machine has:
   ``pytorch_eager_fp32`` (TF32 off: the paper's FP32), ``pytorch_fast_fp16`` (CUDA: FP16,
   channels_last, fused D2S kernel, CUDA graphs, GPU pre-processing), ``pytorch_compile_fp32``
   (torch.compile; skipped on a CPU unless ``--cpu-compile``: it compiles for minutes per
   shape there), ``onnxruntime_cpu`` (and ``onnxruntime_cuda`` when that provider exists) on a
   dynamic-shape ONNX export; on a CPU also that export run by OpenVINO (``openvino_f32``
   forced, ``openvino_default``: bf16 where the CPU has it) and its calibrated INT8 form
   (``onnxruntime_int8_cpu``, ``openvino_int8``; calibrated on 16 synthetic images, enough for
   speed; not in a dry run), ``tensorrt_fp16`` (a static engine per shape where TensorRT is
   installed). Within a cell (size, batch) the variants are interleaved: each is warmed up, then
   ``rounds`` rounds each time every variant in turn; latencies are medians over all rounds.
2. **Table II** (the baseline, +CSR, +D2S, both) and **Table III** (CSR width 128/256/512/1024):
   parameters, GFLOPs and eager-FP32 speed at 1344x800, batch 1, all eight models interleaved
   in the same rounds, so their ratios hold on a noisy machine; the paper's numbers alongside.
   The baseline is measured twice: mmdetection's SOLOv2 (``solov2_r50_fpn_coco``, the true
   baseline and the ratios' reference) and design.md's FPN fusion on csrinfer's head.
3. **Floor** of the paper model at 1344x800: FLOPs (``csrinfer.model.complexity.count_flops``)
   and bytes moved at least once (``count_bytes``: weights + input + outputs + every layer's
   output written once and read once), against this device's attainable peaks measured here
   (a large matmul, a large copy); floor = max(FLOPs / peak FLOP/s, bytes / copy bandwidth),
   efficiency = floor / measured network latency (p50) of each 1344x800 row.
4. Optionally (``--ap-model FILE --ap-data DIR``) a trained model's mask AP and speed on a
   COCO-format set, for the plot (the only kind of point with our own AP).

Cells run in order of importance (1344x800 batch 1, the tables, the floor, 640x640, batch 8)
under a time budget (``--budget-s``); what does not fit is listed under ``skipped`` with the
reason, never silently dropped. The JSON is rewritten after every stage. On a shared CPU the
numbers are noisy: the load average is recorded at every stage.

Run (repository root)::

    PYTHONPATH=$PWD python benchmarks/run_all.py                       # CPU: ~15 minutes on 2 cores
    PYTHONPATH=$PWD python benchmarks/run_all.py --quick --out $OUT    # GPU: ~4 minutes
    PYTHONPATH=$PWD python benchmarks/run_all.py --dry-run --out /tmp/x  # tiny, seconds (CI)

``benchmarks/report_all.py RESULT.json`` rewrites the .md and .png from a JSON.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: spinning threads crawl on shared cores

import argparse  # noqa: E402
import copy  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # csrinfer and tests.conftest.make_confident, without installing
sys.path.insert(0, str(REPO / "benchmarks"))

import torch  # noqa: E402

from csrinfer import atomic  # noqa: E402
from csrinfer.apps import bench  # noqa: E402

SIZES = {"1344x800": (800, 1344), "640x640": (640, 640)}
DRY_SIZES = {"128x96": (96, 128), "64x64": (64, 64)}
PROGRESS = sys.stderr.isatty()  # progress bars on a terminal; stage lines only in logs
IMAGE_HW = (480, 800)  # letterboxed to 800x1333, padded to 800x1344; to 384x640 in 640x640
PAPER_MODEL = "csr_d2s_r50_coco"
# (config, CSR, D2S, paper AP, paper FPS) of Table II; (CSR width, config, paper AP, paper #params M, paper FPS) of III.
# The paper's baseline row ("FPN without any modification") is measured twice: as mmdetection's
# SOLOv2 (FPN P2-P6, per-level grids, 512-wide branches: the true baseline, issue 22, and the
# ratios' reference) and as design.md's FPN fusion on csrinfer's head (what CSR and D2S replace).
TABLE_II = [("solov2_r50_fpn_coco", False, False, 34.1, 18.3), ("fpn_r50_coco", False, False, 34.1, 18.3),
            ("csr_r50_coco", True, False, 34.9, 19.5), ("d2s_r50_coco", False, True, 34.8, 19.5),
            ("csr_d2s_r50_coco", True, True, 35.4, 19.5)]
SOLOV2_DRY_CONFIG = "solov2_tiny_test"  # a dry run's stand-in for the SOLOv2 row (the test fixture's layout)
TABLE_III = [(128, "csr128_d2s_r50_coco", 34.9, 31.63, 20.4), (256, "csr_d2s_r50_coco", 35.4, 32.13, 19.5),
             (512, "csr512_d2s_r50_coco", 36.1, 33.34, 17.6), (1024, "csr1024_d2s_r50_coco", 36.5, 34.88, 16.1)]


@dataclass
class Settings:
    device: str
    sizes: dict
    batches: list
    warmup: int
    rounds: int
    per_round: int
    cap_s: float  # timed seconds one variant may spend in one cell (fewer iterations when slow)
    budget_s: float
    config: Path
    dry_run: bool = False
    quick: bool = False
    cpu_compile: bool = False
    defer_compile: bool = False  # torch.compile only at the end, in the first cell (compiling is slow)
    skip: list = field(default_factory=list)


class Budget:
    def __init__(self, seconds: float):
        self.start, self.seconds = time.monotonic(), seconds

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()


# --- variants --------------------------------------------------------------------------------

@dataclass
class Variant:
    """One way to run the paper model; ``make(size, batch)`` -> a Segmenter for that cell."""

    name: str
    make: object = None
    skip: str | None = None  # why this variant cannot run on this machine
    deferred: bool = False  # run only at the end, in the first cell (--quick: compiling is slow)
    first_call_s: float = 0.0  # what its first call may take (compiling), for the time budget
    max_batch: int | None = None  # larger batches skipped (--quick on a GPU: ONNX Runtime on the CPU)


def build_variants(model, cfg, s: Settings, workdir: Path) -> list[Variant]:
    from csrinfer.runtime.backends.torch import TorchBackend
    from csrinfer.runtime.fastpath import FastPathOptions
    from csrinfer.runtime.segmenter import Segmenter

    cuda = s.device.startswith("cuda")
    cache: dict = {}

    def torch_variant(key, fast=False):
        def make(size, batch):
            if key not in cache:
                cache[key] = TorchBackend(copy.deepcopy(model), s.device, cfg=cfg, fast=fast)
            return Segmenter(cache[key], input_size=size)
        return make

    def onnx_variant(device):
        def make(size, batch):
            if "onnx" not in cache:
                cache["onnx"] = export_dynamic_onnx(model, cfg, workdir)
            from csrinfer.runtime.backends.onnxruntime import OnnxRuntimeBackend

            key = f"ort_{device}"
            if key not in cache:
                cache[key] = OnnxRuntimeBackend(cache["onnx"], device=device)
            return Segmenter(cache[key], input_size=size)
        return make

    def cpu_runtime_variant(key, int8=False, **options):
        def make(size, batch):
            if "onnx" not in cache:
                cache["onnx"] = export_dynamic_onnx(model, cfg, workdir)
            if int8 and "int8" not in cache:
                cache["int8"] = quantize_for_speed(cache["onnx"], workdir)
            if key not in cache:
                from csrinfer.runtime.backends import load_backend

                cache[key] = load_backend(cache["int8" if int8 else "onnx"], "cpu", **options)
            return Segmenter(cache[key], input_size=size)
        return make

    def trt_variant(size, batch):
        from csrinfer.export.pipeline import ExportOptions, export_model

        out = workdir / f"trt_{size[0]}x{size[1]}_b{batch}"
        result = export_model(copy.deepcopy(model).cpu(), ExportOptions(out_dir=out, input_size=size, batch=batch),
                              cfg=cfg)
        if result.engine is None:
            raise RuntimeError("; ".join(result.notes) or "no engine built")
        return Segmenter(result.engine, device=s.device)

    ort_providers = _ort_providers()
    missing = [m for m in ("onnx", "onnxscript") if not _has_module(m)]
    onnx_skip = ("onnxruntime is not installed" if ort_providers is None else
                 f"the ONNX export needs {' and '.join(missing)}, not installed here" if missing else None)
    has_trt = _has_module("tensorrt")
    variants = [
        Variant("pytorch_eager_fp32", torch_variant("eager")),
        Variant("pytorch_fast_fp16", torch_variant("fast", FastPathOptions.all_on()),
                skip=None if cuda else "the GPU fast path needs CUDA"),
        Variant("pytorch_compile_fp32", torch_variant("compile", FastPathOptions(compile=True)),
                skip=None if cuda or s.cpu_compile or s.dry_run else
                "torch.compile takes minutes per input shape on a small CPU (--cpu-compile to include it)",
                deferred=s.defer_compile, first_call_s=0.0 if s.dry_run else 90.0),
        Variant("onnxruntime_cpu", onnx_variant("cpu"), skip=onnx_skip,
                max_batch=1 if s.quick and cuda else None),
    ]
    if ort_providers and "CUDAExecutionProvider" in ort_providers and cuda:
        variants.append(Variant("onnxruntime_cuda", onnx_variant("cuda"), skip=onnx_skip))
    if not cuda:  # the CPU runtimes and precisions (docs/cpu.md)
        ov_skip = onnx_skip or (None if _has_module("openvino") else "OpenVINO is not installed (csrinfer[openvino])")
        int8_skip = "INT8 calibration is left out of a dry run" if s.dry_run else None
        variants += [
            Variant("openvino_f32", cpu_runtime_variant("ov_f32", runtime="openvino", precision="f32"), skip=ov_skip),
            Variant("openvino_default", cpu_runtime_variant("ov_default", runtime="openvino"), skip=ov_skip),
            Variant("onnxruntime_int8_cpu", cpu_runtime_variant("ort_int8", int8=True), skip=onnx_skip or int8_skip),
            Variant("openvino_int8", cpu_runtime_variant("ov_int8", int8=True, runtime="openvino"),
                    skip=ov_skip or int8_skip),
        ]
    variants.append(Variant("tensorrt_fp16", trt_variant,
                            skip=None if has_trt and cuda else
                            ("TensorRT is not installed here" if not has_trt else "TensorRT needs CUDA")))
    if s.dry_run:  # the dry run exercises the compile variant's bookkeeping, not the compiler
        variants[2].skip = "torch.compile is not run in a dry run"
    for name in s.skip:
        for v in variants:
            if v.name == name:
                v.skip = "skipped by --skip"
    return variants


def export_dynamic_onnx(model, cfg, workdir: Path) -> Path:
    """The paper model as one ONNX file with batch, height and width free."""
    from csrinfer.export.pipeline import ExportOptions, export_model

    size = tuple(min(640, v) for v in cfg.input.export_size)  # the example shape only; H, W stay free
    t0 = time.monotonic()
    print(f"  exporting a dynamic-shape ONNX of {cfg.name} ...", flush=True)
    result = export_model(copy.deepcopy(model).cpu(), ExportOptions(out_dir=workdir, input_size=size, dynamic=True,
                                                                    engine=False), cfg=cfg)
    print(f"  exported in {time.monotonic() - t0:.0f} s", flush=True)
    return result.onnx


def quantize_for_speed(onnx_path: Path, workdir: Path) -> Path:
    """The QDQ INT8 form of ``onnx_path``, calibrated on 16 synthetic-shapes images: its ranges
    are not those of real photos, which changes what it finds, not how fast it runs."""
    from csrinfer.data.synthetic import write_synthetic
    from csrinfer.export.int8 import MIN_CALIB_IMAGES, quantize_int8

    t0 = time.monotonic()
    print("  calibrating an INT8 ONNX ...", flush=True)
    data = write_synthetic(workdir / "calib", n_train=MIN_CALIB_IMAGES, n_val=1, seed=0)
    path = quantize_int8(onnx_path, workdir / "model.int8.onnx", data)
    print(f"  calibrated in {time.monotonic() - t0:.0f} s", flush=True)
    return path


def _ort_providers():
    try:
        import onnxruntime

        return onnxruntime.get_available_providers()
    except ImportError:
        return None


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


# --- timing ----------------------------------------------------------------------------------

class Estimates:
    """Per-image latency (ms) of each variant, scaled by input pixels, for planning iterations."""

    def __init__(self):
        self.seen: dict[str, tuple[float, int]] = {}  # variant -> (ms per image, pixels)

    def record(self, name: str, ms_per_image: float, pixels: int) -> None:
        self.seen[name] = (ms_per_image, pixels)

    def per_batch(self, name: str, size, batch: int) -> float | None:
        if name not in self.seen:
            return None
        ms, pixels = self.seen[name]
        return ms * (size[0] * size[1]) / pixels * batch


def plan_iterations(est_ms: float, s: Settings) -> tuple[int, int]:
    """(warm-up iterations in all, timed iterations per round) for a variant taking ``est_ms`` per
    batch: as configured, fewer when that would pass ``s.cap_s`` (at least 1 of each)."""
    est_ms = max(est_ms, 1e-3)
    per_round = max(1, min(s.per_round, int(s.cap_s * 1e3 / est_ms / s.rounds)))
    warmup = max(1, min(s.warmup, int(0.25 * s.cap_s * 1e3 / est_ms)))
    return warmup, per_round


def time_interleaved(entries: list[dict], s: Settings, budget: Budget, estimates: Estimates, size, batch,
                     skipped: list, where: str) -> None:
    """Warm each entry up, then ``s.rounds`` rounds of every entry in turn.

    ``entries``: dicts with ``name`` and ``run`` (a BenchRun); sets ``per_round`` on each, and
    removes (into ``skipped``) those that would not fit the time left.
    """
    for e in list(entries):
        est = estimates.per_batch(e["name"], size, batch)
        need = est * (1 + s.rounds) / 1e3 if est is not None else e.get("first_call_s", 0.0)
        if budget.left() < need or budget.left() <= 0:
            entries.remove(e)
            skipped.append({"what": f"{e['name']} {where}", "reason": f"time budget: needs ~{need:.0f} s, "
                            f"{max(0.0, budget.left()):.0f} s left"})
            continue
        t0 = time.perf_counter()
        e["run"].warmup(1)  # the first call: compiles, captures, autotunes, allocates
        e["first_call_ms"] = (time.perf_counter() - t0) * 1e3
        done = 1
        if s.warmup > 1 and est is None:  # the second call is a better estimate of the steady state
            t0 = time.perf_counter()
            e["run"].warmup(1)
            est, done = (time.perf_counter() - t0) * 1e3, 2
        elif est is None:
            est = e["first_call_ms"]
        e["warmup"], e["per_round"] = plan_iterations(est, s)
        e["run"].warmup(max(0, e["warmup"] - done), progress=PROGRESS, desc=f"warm-up {e['name']}")
        e["warmup"] = max(e["warmup"], done)
        estimates.record(e["name"], est / batch, size[0] * size[1])
        need = s.rounds * e["per_round"] * est / 1e3
        if need > budget.left():
            entries.remove(e)
            skipped.append({"what": f"{e['name']} {where}",
                            "reason": f"time budget: timing needs ~{need:.0f} s, {max(0.0, budget.left()):.0f} s left"})
    from tqdm import tqdm

    total = sum(e["per_round"] for e in entries) * s.rounds
    with tqdm(total=total, desc=f"timing {where}", unit="it", dynamic_ncols=True, leave=False,
              disable=not PROGRESS) as bar:
        for _ in range(s.rounds):
            for e in entries:
                e["run"].run(e["per_round"])
                bar.update(e["per_round"])
    for e in entries:
        summary = e["run"].summary()
        estimates.record(e["name"], summary["latency_ms"]["total"]["p50"] / batch, size[0] * size[1])


def speed_cell(name: str, size, batch: int, variants: list[Variant], s: Settings, budget: Budget,
               estimates: Estimates, report: dict, images, deferred: bool = False) -> None:
    """Time every variant (or, with ``deferred``, the deferred ones) in one cell, interleaved."""
    where = f"{name} batch {batch}"
    print(f"[{budget.elapsed():6.0f} s] speed: {where}{' (deferred variants)' if deferred else ''}", flush=True)
    entries = []
    for v in variants:
        if v.skip or v.deferred != deferred:
            continue
        if v.max_batch is not None and batch > v.max_batch:
            report["skipped"].append({"what": f"{v.name} {where}", "reason": f"--quick: batch {v.max_batch} only "
                                      "(ONNX Runtime on the CPU of a GPU machine is slow; the time goes to the GPU)"})
            continue
        try:
            seg = v.make(size, batch)
            entries.append({"name": v.name, "run": bench.BenchRun(seg, images, batch), "first_call_s": v.first_call_s})
        except Exception as exc:  # record and go on with the other variants
            report["errors"][f"{v.name} {where}"] = _error(exc)
    try:
        time_interleaved(entries, s, budget, estimates, size, batch, report["skipped"], where)
    except Exception as exc:
        report["errors"][f"speed {where}"] = _error(exc)
        return
    for e in entries:
        run = e["run"]
        row = bench.describe(run.segmenter, run.summary(), name=PAPER_MODEL, warmup=e["warmup"],
                             date=bench.now_iso(), variant=e["name"], input_name=name,
                             first_call_ms=e["first_call_ms"], per_round=e["per_round"], rounds=s.rounds)
        report["speed"].append(row)
        print(f"    {e['name']:<24} {row['fps']:8.2f} img/s  p50 {row['latency_ms']['total']['p50']:9.1f} ms "
              f"({row['iters']} timed)", flush=True)


def _error(exc: Exception) -> str:
    print(traceback.format_exc(), file=sys.stderr, flush=True)
    return f"{type(exc).__name__}: {exc}"


# --- the paper's tables ----------------------------------------------------------------------

def table_config(name: str, s: Settings):
    """The config of a table row; in a dry run the small config with that row's CSR/D2S/width."""
    from csrinfer.config import load_config

    cfg = load_config(REPO / "models" / f"{name}.yaml")
    if not s.dry_run:
        return cfg
    if cfg.model.arch == "solov2":
        small = load_config(REPO / "models" / f"{SOLOV2_DRY_CONFIG}.yaml")
        small.name = f"{name}(tiny)"
        return small
    small = load_config(s.config)
    for key in ("csr", "d2s", "csr_channels"):
        setattr(small.model, key, getattr(cfg.model, key))
    small.name = f"{name}(small)"
    return small


def paper_tables(s: Settings, budget: Budget, estimates: Estimates, report: dict, images) -> None:
    """Tables II and III: eight configs, parameters, GFLOPs and eager FP32 at the first size, batch 1, interleaved."""
    from csrinfer.model import build_model
    from csrinfer.model.complexity import count_flops, count_parameters
    from csrinfer.runtime.segmenter import Segmenter
    from tests.conftest import make_confident

    size_name, size = next(iter(s.sizes.items()))
    names = list(dict.fromkeys([r[0] for r in TABLE_II] + [r[1] for r in TABLE_III]))
    print(f"[{budget.elapsed():6.0f} s] Tables II and III: {len(names)} configs at {size_name}, batch 1", flush=True)
    entries, params, flops, archs = [], {}, {}, {}
    est = estimates.per_batch("pytorch_eager_fp32", size, 1)
    if est is not None and budget.left() < len(names) * est * (2 + s.rounds) / 1e3:
        report["skipped"].append({"what": "Tables II and III", "reason": f"time budget: needs ~"
                                  f"{len(names) * est * (2 + s.rounds) / 1e3:.0f} s, {budget.left():.0f} s left"})
        return
    for name in names:
        cfg = table_config(name, s)
        torch.manual_seed(0)
        model = make_confident(build_model(cfg), nms_pre=cfg.inference.nms_pre).eval()
        params[name] = count_parameters(model)["total"]
        flops[name] = count_flops(model, *size)["network"]
        archs[name] = cfg.model.arch
        seg = Segmenter(model, s.device, cfg=cfg, input_size=size)
        entries.append({"name": name, "run": bench.BenchRun(seg, images, 1)})
    tmp = Estimates()
    if est is not None:
        for name in names:
            tmp.record(name, est, size[0] * size[1])
    time_interleaved(entries, s, budget, tmp, size, 1, report["skipped"], f"table {size_name} batch 1")
    timed = {e["name"]: e["run"].summary() for e in entries}
    rows2, rows3 = [], []
    base = timed.get(TABLE_II[0][0])
    for name, csr, d2s, ap, fps in TABLE_II:
        rows2.append(table_row(name, params[name], timed.get(name), base, gflops=flops[name] / 1e9, paper_ap=ap,
                               paper_fps=fps, paper_ratio=fps / TABLE_II[0][4], csr=csr, d2s=d2s,
                               arch=archs[name]))
    base = timed.get(TABLE_III[1][1])
    for width, name, ap, paper_params, fps in TABLE_III:
        rows3.append(table_row(name, params[name], timed.get(name), base, gflops=flops[name] / 1e9, paper_ap=ap,
                               paper_fps=fps,
                               paper_ratio=fps / TABLE_III[1][4], csr_channels=width, paper_params_M=paper_params))
    common = {"input": size_name, "batch": 1, "variant": "pytorch_eager_fp32", "device": s.device,
              "device_name": bench.device_name(s.device), "rounds": s.rounds}
    report["table_ii"] = {**common, "ratio_to": TABLE_II[0][0], "rows": rows2}
    report["table_iii"] = {**common, "ratio_to": TABLE_III[1][1], "rows": rows3}


def table_row(name, n_params, timed, base, **extra) -> dict:
    row = {"config": name, "params_M": n_params / 1e6, **extra}
    if timed is None:
        return {**row, "fps": None, "latency_ms_p50": None, "fps_ratio": None, "iters": 0}
    ratio = timed["fps"] / base["fps"] if base else None
    return {**row, "fps": timed["fps"], "latency_ms_p50": timed["latency_ms"]["total"]["p50"], "fps_ratio": ratio,
            "iters": timed["iters"]}


# --- the floor -------------------------------------------------------------------------------

def measure_peaks(device: str, dry: bool) -> dict:
    """Attainable peaks measured on this device: matmul FLOP/s (FP32 with TF32 off; FP16 on
    CUDA) and device-memory copy bandwidth (read + write bytes per second). The best of several
    runs: a peak is what the device can do, and on a shared CPU the median mostly measures the
    other jobs."""
    cuda = device.startswith("cuda")
    n = 256 if dry else (8192 if cuda else 2048)
    copy_bytes = 2**22 if dry else (2**31 if cuda else 2**28)
    clock = bench.StepClock(device)

    def timed(fn, runs):
        fn()
        out = []
        for _ in range(runs):
            clock.start()
            fn()
            clock.mark("x")
            out.append(clock.read()["x"])
        return min(out)

    peaks = {}
    dtypes = {"fp32": torch.float32, "fp16": torch.float16} if cuda else {"fp32": torch.float32}
    for name, dtype in dtypes.items():
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        ms = timed(lambda: a @ b, 10)
        peaks[f"matmul_{name}_flops"] = 2 * n**3 / (ms / 1e3)
    src = torch.empty(copy_bytes // 4, device=device).uniform_()
    dst = torch.empty_like(src)
    ms = timed(lambda: dst.copy_(src), 10)
    peaks["copy_bytes_per_s"] = 2 * copy_bytes / (ms / 1e3)
    peaks.update(matmul_n=n, copy_bytes=copy_bytes, tf32=bool(torch.backends.cuda.matmul.allow_tf32))
    return peaks


def floor_stage(model, s: Settings, report: dict) -> None:
    """FLOPs and bytes of the paper model at the first size, for batch 1 and 8, FP32 and FP16."""
    from csrinfer.model.complexity import count_bytes, count_flops

    size_name, (h, w) = next(iter(s.sizes.items()))
    flops = count_flops(copy.deepcopy(model).to("meta"), h, w)
    per_image = flops["network"] + flops["postprocess"]
    peaks = measure_peaks(s.device, s.dry_run)
    precisions = {"fp32": 4, "fp16": 2} if s.device.startswith("cuda") else {"fp32": 4}
    rows = []
    for batch in s.batches:
        for precision, nbytes in precisions.items():
            moved = count_bytes(model, h, w, batch, nbytes)
            compute_ms = batch * per_image / peaks[f"matmul_{precision}_flops"] * 1e3
            memory_ms = moved["total"] / peaks["copy_bytes_per_s"] * 1e3
            rows.append({"batch": batch, "precision": precision, "flops": batch * per_image, "bytes": moved,
                         "compute_floor_ms": compute_ms, "memory_floor_ms": memory_ms,
                         "floor_ms": max(compute_ms, memory_ms),
                         "bound": "compute" if compute_ms >= memory_ms else "memory"})
    report["floor"] = {"model": Path(s.config).stem, "input": size_name, "flops_per_image": {"network": flops["network"],
                                                               "postprocess": flops["postprocess"]},
                       "peaks": peaks, "rows": rows, "efficiency": []}


def add_efficiency(report: dict) -> None:
    """efficiency = floor / measured network p50, for every speed row at the floor's size."""
    floor = report.get("floor")
    if not floor:
        return
    effs = []
    for row in report["speed"]:
        if row.get("input_name") != floor["input"]:
            continue
        precision = "fp16" if row["precision"] == "fp16" else "fp32"
        match = next((r for r in floor["rows"] if r["batch"] == row["batch"] and r["precision"] == precision), None)
        if match is None:
            continue
        measured = row["latency_ms"]["network"]["p50"]
        effs.append({"variant": row["variant"], "batch": row["batch"], "precision": row["precision"],
                     "floor_ms": match["floor_ms"], "network_p50_ms": measured,
                     "efficiency": match["floor_ms"] / measured})
    floor["efficiency"] = effs


# --- accuracy point --------------------------------------------------------------------------

def accuracy_stage(args, s: Settings, report: dict) -> None:
    print(f"  mask AP and speed of {args.ap_model} on {args.ap_data}", flush=True)
    result = bench.benchmark(args.ap_model, device="cpu" if args.ap_model.endswith(".onnx") else s.device,
                             warmup=2, iters=10 if not s.dry_run else 2, data=args.ap_data, progress=PROGRESS)
    report["accuracy_points"].append(result)


# --- main ------------------------------------------------------------------------------------

def machine_name(device: str) -> str:
    if device.startswith("cuda"):
        return "gpu-" + re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(torch.device(device)).lower()).strip("-")
    return f"cpu-{os.cpu_count()}core"


def parse_args(argv=None):
    from csrinfer.cli.common import parse_hw

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=None,
                   help="folder for <machine>.json/.md/.png (default benchmarks/results; a dry run needs it given)")
    p.add_argument("--machine", default=None, help="file name stem (default: cpu-<N>core or gpu-<name>)")
    p.add_argument("--device", default=None, help="cpu or cuda[:N] (default: cuda when available)")
    p.add_argument("--quick", action="store_true", help="fewer iterations; torch.compile in the first cell only")
    p.add_argument("--dry-run", action="store_true", help="the small config at tiny sizes on the CPU, in seconds")
    p.add_argument("--budget-s", type=float, default=None,
                   help="stop starting new work after this many seconds (default: CPU 840, GPU 540, --quick 200)")
    p.add_argument("--cap-s", type=float, default=None,
                   help="timed seconds per variant per cell before iterations are cut (default: CPU 120, GPU 15)")
    p.add_argument("--sizes", nargs="+", type=parse_hw, default=None, metavar="HxW", help="input sizes (default 800x1344 640x640)")
    p.add_argument("--batches", nargs="+", type=int, default=None, help="batch sizes (default 1 8)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up iterations per variant and cell")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds")
    p.add_argument("--per-round", type=int, default=None, help="timed iterations per variant per round (at most)")
    p.add_argument("--cpu-compile", action="store_true", help="include torch.compile on a CPU")
    p.add_argument("--skip", nargs="*", default=[],
                   help="variants or stages to leave out: pytorch_compile_fp32, onnxruntime_cpu, ..., tables, floor")
    p.add_argument("--ap-model", default=None, help="a trained model file for the AP-vs-FPS plot (with --ap-data)")
    p.add_argument("--ap-data", default=None, help="COCO-format folder whose val split --ap-model is evaluated on")
    return p.parse_args(argv)


def settings_from(args) -> Settings:
    if args.dry_run:
        device = "cpu"
    else:
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.startswith("cuda")
    if args.dry_run:
        d = dict(warmup=1, rounds=2, per_round=1, cap_s=5.0, budget_s=120.0)
    elif cuda:
        d = dict(warmup=5, rounds=3, per_round=5, cap_s=8.0, budget_s=200.0) if args.quick else \
            dict(warmup=10, rounds=5, per_round=10, cap_s=15.0, budget_s=540.0)
    else:
        d = dict(warmup=1, rounds=3, per_round=1, cap_s=120.0, budget_s=840.0)
    sizes = ({f"{w}x{h}": (h, w) for h, w in args.sizes} if args.sizes else
             (DRY_SIZES if args.dry_run else SIZES))
    return Settings(
        device=device, sizes=sizes, batches=args.batches or ([1, 2] if args.dry_run else [1, 8]),
        warmup=args.warmup if args.warmup is not None else d["warmup"],
        rounds=args.rounds or d["rounds"], per_round=args.per_round or d["per_round"],
        cap_s=args.cap_s or d["cap_s"], budget_s=args.budget_s or d["budget_s"],
        config=REPO / "models" / ("csr_d2s_r18_small.yaml" if args.dry_run else f"{PAPER_MODEL}.yaml"),
        dry_run=args.dry_run, quick=args.quick, cpu_compile=args.cpu_compile,
        defer_compile=args.quick, skip=list(args.skip))


def cell_order(s: Settings) -> list:
    """Stages by importance: the paper's setting (first size, batch 1), the tables, the floor,
    the other cells (smaller inputs, then larger batches), the deferred variants."""
    cells = [(n, hw, b) for b in sorted(s.batches) for n, hw in s.sizes.items()]
    return cells[:1] + ["tables", "floor"] + cells[1:] + ["deferred"]


def main(argv=None) -> int:
    from cpu_runtimes import lscpu  # the CPU's model and flags (bf16, AMX, VNNI decide the CPU rows)

    args = parse_args(argv)
    if bool(args.ap_model) != bool(args.ap_data):
        print("run_all.py: give --ap-model and --ap-data together", file=sys.stderr)
        return 2
    s = settings_from(args)
    if s.device.startswith("cuda"):
        if not torch.cuda.is_available():
            print("run_all.py: no CUDA device here; use --device cpu", file=sys.stderr)
            return 2
        # FP32 means FP32 (the paper's V100 has no TF32); the fast path runs FP16 anyway.
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    if args.dry_run and args.out is None:  # its tiny numbers must never replace the published ones
        print("run_all.py: a dry run needs --out, a folder outside benchmarks/results", file=sys.stderr)
        return 2
    budget = Budget(s.budget_s)
    name = args.machine or machine_name(s.device)
    out = Path(args.out) if args.out is not None else REPO / "benchmarks" / "results"
    json_path = out / f"{name}.json"
    report = {
        "schema": "csrinfer-run-all/1", "machine": name, "device": s.device,
        "device_name": bench.device_name(s.device), "date": bench.now_iso(), "command": bench.command_line(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in s.__dict__.items()},
        "versions": bench.versions(), "host": {**bench.host_info(), "lscpu": lscpu()},
        "loadavg": {"start": bench.loadavg()},
        "notes": [
            "random weights (made confident, so post-processing pastes 100 instances): speed only, no AP; "
            "the paper model is not trained here",
            "FPS = images/s = batch * 1000 / mean latency; latencies are per batch, p50 over all interleaved rounds",
            "FP32 rows run with TF32 off" if s.device.startswith("cuda") else
            "CPU numbers on a shared machine are noisy: see the load averages",
        ],
        "speed": [], "skipped": [], "errors": {}, "accuracy_points": [], "stage_seconds": {},
        "table_ii": None, "table_iii": None, "floor": None,
    }
    from csrinfer.config import load_config
    from csrinfer.model import build_model
    from tests.conftest import make_confident

    cfg = load_config(s.config)
    torch.manual_seed(0)
    model = make_confident(build_model(cfg), nms_pre=cfg.inference.nms_pre).eval()
    images = bench.bench_images(max(s.batches), image_hw=(IMAGE_HW if not s.dry_run else (72, 120)))
    estimates = Estimates()
    from report_all import write_markdown, write_plot

    def save():
        """JSON, Markdown and plot of what is known so far (a run cut short keeps its results)."""
        report["total_seconds"] = budget.elapsed()
        atomic.write_json(json_path, report)
        write_markdown(report, json_path.with_suffix(".md"))
        write_plot(report, json_path.with_suffix(".png"))
    with tempfile.TemporaryDirectory(prefix="csrinfer-run-all-") as tmp:
        variants = build_variants(model, cfg, s, Path(tmp))
        report["skipped"] += [{"what": v.name, "reason": v.skip} for v in variants if v.skip]
        report["skipped"] += [{"what": v.name, "reason": "--quick: runs last, at the first size and batch 1 only "
                               "(compiling each shape takes minutes)"} for v in variants if v.deferred and not v.skip]
        first = next(x for x in cell_order(s) if not isinstance(x, str))
        for item in cell_order(s):
            stage_name = item if isinstance(item, str) else f"{item[0]} batch {item[2]}"
            t0 = time.monotonic()
            try:
                if item == "tables":
                    if "tables" not in s.skip:
                        paper_tables(s, budget, estimates, report, images)
                elif item == "floor":
                    if "floor" not in s.skip:
                        print(f"[{budget.elapsed():6.0f} s] floor", flush=True)
                        floor_stage(model, s, report)
                elif item == "deferred":
                    if any(v.deferred and not v.skip for v in variants):
                        speed_cell(*first, variants, s, budget, estimates, report, images, deferred=True)
                else:
                    speed_cell(*item, variants, s, budget, estimates, report, images)
            except Exception as exc:
                report["errors"][stage_name] = _error(exc)
            report["loadavg"][stage_name] = bench.loadavg()
            report["stage_seconds"][stage_name] = round(time.monotonic() - t0, 1)
            add_efficiency(report)
            save()
        if args.ap_model:
            try:
                accuracy_stage(args, s, report)
            except Exception as exc:
                report["errors"]["accuracy"] = _error(exc)
    report["loadavg"]["end"] = bench.loadavg()
    save()
    md = json_path.with_suffix(".md")
    print(f"wrote {json_path}, {md} and {json_path.with_suffix('.png')} in {budget.elapsed():.0f} s")
    print(md.read_text())
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
