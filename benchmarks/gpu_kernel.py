"""Check and time the fused D2S kernel and the GPU fast path on one NVIDIA GPU, in one run (issue 5).

1. Correctness of ``d2s_fused.cu`` against the reference (float64) on fresh random inputs,
   output poisoned with NaN first so every element must be written: every kernel variant,
   the paper's D2S shapes at 1344x800 (x = [B,256,25,42] and [B,256,50,84], B = 1 and 8), odd
   sizes, a misaligned input, the torch op, and a CUDA-graph replay of the op.
2. Speed against PyTorch's pixel_shuffle + grouped conv2d in the same dtype: median of many
   runs timed with CUDA events, cold (L2 flushed before each call) and back to back inside a
   CUDA graph (input buffers rotated over more than the L2), the achieved bandwidth as a
   fraction of a measured device-to-device copy; every (vector width, rows per thread)
   variant at batch 8.
3. The whole network through ``Segmenter.predict``, image in (uint8 BGR) -> Instances out, at
   1344x800 (a 480x800 HxW image is letterboxed to 800x1333 and padded to 800x1344), batch 1,
   the paper config with random weights made confident: eager FP32 (TF32 off: the paper's
   FP32), eager with PyTorch's default TF32 convolutions, torch.compile of the FP32 model (and
   of the FP16 fast model), the fast path with every switch on and with each switch off in
   turn; median latency, FPS, where the time goes (pre-processing, network + in-graph
   post-processing, Instances), and each variant checked against eager FP32 on the same input
   tensor (csrinfer.apps.compare) and by matching its own instances.

A JSON file gets everything (GPU, driver, torch version, date, the exact command); a short
table is printed last. ``--dry-run`` runs the same logic on the CPU with tiny shapes and the
small config (a test runs it in CI). Exit code 1 if a correctness check fails or a stage breaks.

On the GPU machine (from the repository root; torch, cuda-python and opencv are there, and
nothing needs installing because the repository is on PYTHONPATH)::

    PYTHONPATH=$PWD PYTHONUNBUFFERED=1 python3 benchmarks/gpu_kernel.py --out $OUT/gpu_kernel.json 2>&1 | tee $OUT/gpu_kernel.log
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import platform
import shlex
import statistics
import subprocess
import sys
import time
import traceback
from unittest import mock
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # csrinfer and tests.conftest.make_confident, without installing

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import csrinfer.plugins.torch_op  # noqa: E402,F401  (registers torch.ops.csrinfer.d2s_fused)
from csrinfer.model.d2s import d2s_fused_reference  # noqa: E402
from csrinfer.plugins.launch import VECTOR_WIDTHS, ROWS_PER_THREAD, bytes_moved, dtype_name, launch_params  # noqa: E402

PAPER_SHAPES = [(1, 256, 25, 42), (1, 256, 50, 84), (8, 256, 25, 42), (8, 256, 50, 84)]
ODD_SHAPES = [(3, 8, 7, 5), (2, 12, 1, 1), (1, 256, 13, 17), (2, 16, 6, 8), (1, 4, 2, 3), (2, 32, 9, 24)]
TOLERANCE = {"float32": 1e-5, "float16": 2e-3}
TARGETS = {"kernel_speedup": 2.0, "bandwidth_fraction": 0.6, "e2e_speedup": 8.0}


# --- timing ----------------------------------------------------------------------------------

class Clock:
    """Times ``fn`` with CUDA events on a GPU (perf_counter on the CPU of a dry run); ms per call."""

    def __init__(self, device: torch.device, flush_bytes: int = 0):
        self.cuda = device.type == "cuda"
        self.flush_buf = torch.empty(flush_bytes // 4, dtype=torch.float32, device=device) if flush_bytes else None
        if self.flush_buf is not None:
            self.flush_buf.uniform_()

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def flush(self):
        """Read a buffer larger than the L2 (evicting whatever the last call left there); on a GPU
        this also queues work ahead of the timed call, so the CPU's launch cost stays out of its time."""
        if self.flush_buf is not None:
            self.flush_buf.sum()

    def wall(self, fn, n: int, warmup: int = 1) -> list[float]:
        """Host time of ``fn`` finished on the device (for work mixing CPU and GPU steps)."""
        for _ in range(warmup):
            fn()
        out = []
        for _ in range(n):
            self.sync()
            t0 = time.perf_counter()
            fn()
            self.sync()
            out.append((time.perf_counter() - t0) * 1e3)
        return out

    def times(self, fn, n: int, warmup: int = 3, flush: bool = False) -> list[float]:
        for _ in range(warmup):
            fn()
        self.sync()
        if not self.cuda:
            out = []
            for _ in range(n):
                t0 = time.perf_counter()
                fn()
                out.append((time.perf_counter() - t0) * 1e3)
            return out
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
        for start, end in events:
            if flush:
                self.flush()
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize()
        return [s.elapsed_time(e) for s, e in events]


def summarize(ms: list[float]) -> dict:
    return {"median_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms), "runs": len(ms)}


def graph_per_call_ms(clock: Clock, fn, arg_sets: list[tuple], reps: int) -> float:
    """Median per-call time of ``fn(*args)`` over ``arg_sets``, back to back in one CUDA graph."""
    if not clock.cuda:  # dry run: plain loop
        return statistics.median(clock.times(lambda: [fn(*a) for a in arg_sets], reps, warmup=1)) / len(arg_sets)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for a in arg_sets:
            fn(*a)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for a in arg_sets:
            fn(*a)
    ms = clock.times(graph.replay, reps, warmup=2)
    del graph
    return statistics.median(ms) / len(arg_sets)


# --- the op under test -----------------------------------------------------------------------

def run_kernel(x, w, b, out, vec=None, rows=None):
    """out <- fused kernel (on the CPU of a dry run: the op's reference path, copied into out)."""
    if x.is_cuda:
        from csrinfer.plugins.torch_op import launch

        launch(x, w, b, out, vec=vec, rows=rows)
    else:
        out.copy_(torch.ops.csrinfer.d2s_fused(x, w, b))


def torch_d2s(x, w, b, out=None):
    """The unfused PyTorch baseline: pixel_shuffle then grouped conv2d (+bias)."""
    return F.conv2d(F.pixel_shuffle(x, 2), w, b, padding=1, groups=w.shape[0])


def random_inputs(shape, dtype, device, gen, misaligned=False):
    n, c, h, w = shape
    numel = n * c * h * w
    flat = torch.randn(numel + int(misaligned), generator=gen, device=device).to(dtype)
    x = flat[int(misaligned):].view(shape)  # an offset of one element breaks 16-byte alignment
    weight = torch.randn(c // 4, 1, 3, 3, generator=gen, device=device).to(dtype)
    bias = torch.randn(c // 4, generator=gen, device=device).to(dtype)
    return x, weight, bias


def variants(shape, dtype: str):
    """Every (vec, rows) the kernel has for this shape."""
    return [(v, r) for v in VECTOR_WIDTHS[dtype] if shape[3] % v == 0 for r in ROWS_PER_THREAD]


# --- 1. correctness --------------------------------------------------------------------------

def check_one(shape, dtype, device, gen, vec=None, rows=None, misaligned=False, via="launch") -> dict:
    x, w, b = random_inputs(shape, dtype, device, gen, misaligned)
    n, c, h, wd = shape
    if via == "op":
        out = torch.ops.csrinfer.d2s_fused(x, w, b)
        kernel = launch_params(n, c, h, wd, dtype, aligned=x.data_ptr() % 16 == 0).kernel
    else:
        out = torch.full((n, c // 4, 2 * h, 2 * wd), float("nan"), dtype=dtype, device=device)
        if misaligned:  # the output misaligned too
            out = torch.full((out.numel() + 1,), float("nan"), dtype=dtype, device=device)[1:].view(out.shape)
        run_kernel(x, w, b, out, vec, rows)
        aligned = x.data_ptr() % 16 == 0 and out.data_ptr() % 16 == 0
        kernel = launch_params(n, c, h, wd, dtype, aligned=aligned, vec=vec, rows=rows).kernel
    if device.type == "cuda":
        torch.cuda.synchronize()  # a faulting kernel raises here
    written = bool(torch.isfinite(out).all())
    ref = d2s_fused_reference(x.double(), w.double(), b.double())
    err = ((out.double() - ref).norm() / ref.norm()).item() if written else float("nan")
    again = out.clone()
    if via == "launch":  # same inputs again: a race would show as a different result
        run_kernel(x, w, b, again, vec, rows)
    deterministic = bool(torch.equal(again, out))
    ok = written and deterministic and err <= TOLERANCE[dtype_name(dtype)]
    return {"shape": list(shape), "dtype": dtype_name(dtype), "kernel": kernel, "via": via,
            "misaligned": misaligned, "all_written": written, "deterministic": deterministic,
            "rel_err": err, "tolerance": TOLERANCE[dtype_name(dtype)], "ok": ok}


def check_graph_replay(shape, dtype, device, gen) -> dict:
    """The op captured in a CUDA graph, replayed on new input values."""
    x, w, b = random_inputs(shape, dtype, device, gen)
    if device.type != "cuda":
        return {"check": "cuda graph replay", "ok": True, "skipped": "no CUDA (dry run)"}
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        torch.ops.csrinfer.d2s_fused(x, w, b)
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = torch.ops.csrinfer.d2s_fused(x, w, b)
    x.copy_(torch.randn(x.shape, generator=gen, device=device).to(dtype))
    out.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    ref = d2s_fused_reference(x.double(), w.double(), b.double())
    err = ((out.double() - ref).norm() / ref.norm()).item()
    ok = bool(torch.isfinite(out).all()) and err <= TOLERANCE[dtype_name(dtype)]
    return {"check": "cuda graph replay", "shape": list(shape), "dtype": dtype_name(dtype), "rel_err": err, "ok": ok}


def correctness(device, dtypes, quick: bool, dry: bool) -> dict:
    gen = torch.Generator(device=device).manual_seed(20261126)
    paper = [(1, 8, 5, 6), (2, 8, 3, 4)] if dry else PAPER_SHAPES
    odd = ODD_SHAPES[:3] if dry else ODD_SHAPES
    rows = []
    for dtype in dtypes:
        for shape in paper + odd:
            rows.append(check_one(shape, dtype, device, gen))
            rows.append(check_one(shape, dtype, device, gen, via="op"))
        rows.append(check_one(odd[-1], dtype, device, gen, misaligned=True))
        sweep_shapes = [odd[-1]] if dry else [(2, 32, 9, 24), (1, 16, 5, 16), (8, 256, 25, 42)]
        for shape in sweep_shapes[: 1 if quick else None]:
            for vec, r in variants(shape, dtype_name(dtype)):
                rows.append(check_one(shape, dtype, device, gen, vec=vec, rows=r))
    rows.append(check_graph_replay(paper[0], dtypes[-1], device, gen))
    failed = [r for r in rows if not r["ok"]]
    return {"checks": rows, "passed": len(rows) - len(failed), "failed": len(failed),
            "worst_rel_err": {dtype_name(d): max(r.get("rel_err", 0.0) for r in rows if r.get("dtype") == dtype_name(d))
                              for d in dtypes}}


# --- 2. kernel speed -------------------------------------------------------------------------

def copy_bandwidth(clock: Clock, device, nbytes: int, runs: int) -> dict:
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    ms = statistics.median(clock.times(lambda: dst.copy_(src), runs, warmup=3))
    return {"bytes_each_way": nbytes, "median_ms": ms, "GBps": 2 * nbytes / ms / 1e6}


def rotating_sets(shape, dtype, device, gen, min_bytes: int, max_sets: int = 512):
    """Input/weight/bias/output sets whose total passes ``min_bytes`` (more than the L2)."""
    n, c, h, w = shape
    per_set = bytes_moved(n, c, h, w, dtype)
    count = max(2, min(max_sets, -(-min_bytes // per_set)))
    sets = []
    for _ in range(count):
        x, wt, b = random_inputs(shape, dtype, device, gen)
        sets.append((x, wt, b, torch.empty((n, c // 4, 2 * h, 2 * w), dtype=dtype, device=device)))
    return sets


def kernel_speed(device, dtypes, clock: Clock, copy_gbps: float, l2_bytes: int, runs: int, dry: bool,
                 quick: bool) -> dict:
    gen = torch.Generator(device=device).manual_seed(7)
    shapes = [(1, 8, 5, 6), (2, 8, 3, 4)] if dry else PAPER_SHAPES
    rows = []
    for dtype in dtypes:
        for shape in shapes:
            sets = rotating_sets(shape, dtype, device, gen, 3 * l2_bytes if not dry else 1)
            x, w, b, out = sets[0]
            fused_cold = clock.times(lambda: run_kernel(x, w, b, out), runs, flush=True)
            torch_cold = clock.times(lambda: torch_d2s(x, w, b), runs, flush=True)
            fused_graph = graph_per_call_ms(clock, run_kernel, sets, max(10, runs // 5))
            torch_graph = graph_per_call_ms(clock, torch_d2s, [s[:3] for s in sets], max(10, runs // 5))
            moved = bytes_moved(*shape, dtype)
            gbps = moved / fused_graph / 1e6
            rows.append({
                "shape": list(shape), "dtype": dtype_name(dtype), "kernel": launch_params(*shape, dtype).kernel,
                "bytes": moved, "rotating_sets": len(sets),
                "fused_cold": summarize(fused_cold), "torch_cold": summarize(torch_cold),
                "fused_graph_ms": fused_graph, "torch_graph_ms": torch_graph,
                "speedup_cold": statistics.median(torch_cold) / statistics.median(fused_cold),
                "speedup_graph": torch_graph / fused_graph,
                "fused_GBps": gbps, "bandwidth_fraction": gbps / copy_gbps if copy_gbps else None,
            })
            del sets
    sweep = []
    sweep_shapes = [(2, 8, 3, 4)] if dry else [(8, 256, 25, 42), (8, 256, 50, 84)]
    for dtype in dtypes:
        for shape in sweep_shapes[-1:] if quick else sweep_shapes:
            sets = rotating_sets(shape, dtype, device, gen, 3 * l2_bytes if not dry else 1)
            for vec, r in variants(shape, dtype_name(dtype)):
                ms = graph_per_call_ms(clock, lambda x, w, b, o, v=vec, rr=r: run_kernel(x, w, b, o, v, rr),
                                       sets, max(10, runs // 5))
                gbps = bytes_moved(*shape, dtype) / ms / 1e6
                sweep.append({"shape": list(shape), "dtype": dtype_name(dtype), "vec": vec, "rows": r,
                              "graph_ms": ms, "GBps": gbps, "bandwidth_fraction": gbps / copy_gbps if copy_gbps else None,
                              "default": launch_params(*shape, dtype).kernel.endswith(f"_v{vec}_r{r}")})
            del sets
    return {"shapes": rows, "variant_sweep": sweep}


# --- 3. end to end ---------------------------------------------------------------------------

class Precision:
    """Context: cuDNN TF32 convolutions switched as asked (matmuls stay FP32), restored after."""

    def __init__(self, tf32: bool):
        self.tf32 = tf32

    def __enter__(self):
        self.saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
        torch.backends.cudnn.allow_tf32 = self.tf32
        torch.backends.cuda.matmul.allow_tf32 = self.tf32 and self.saved[1]  # matmuls: only if already on

    def __exit__(self, *exc):
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = self.saved


def paper_model(args):
    """(config, the config's network with random weights made confident: 100 instances)."""
    from csrinfer.config import load_config
    from csrinfer.model import build_model
    from tests.conftest import make_confident

    cfg = load_config(args.config)
    if args.dry_run:  # a tiny network input keeps the CPU run to seconds
        cfg.input.short_side, cfg.input.max_size = 64, 128
    torch.manual_seed(0)
    return cfg, make_confident(build_model(cfg), nms_pre=cfg.inference.nms_pre).eval()


def e2e(device, args, clock: Clock, started: float, save=lambda partial: None) -> dict:
    """Segmenter.predict (image in, Instances out) for each variant; see the module docstring."""
    from csrinfer.runtime.fastpath import FastPathOptions
    from csrinfer.runtime.segmenter import Segmenter

    cfg, base = paper_model(args)
    image = np.random.default_rng(0).integers(0, 256, (*args.image, 3), dtype=np.uint8)
    iters = 2 if args.dry_run else (15 if args.quick else 40)
    all_on = FastPathOptions.all_on()

    # (name, Segmenter options, TF32 convolutions); eager_fp32 first: the others are compared to it.
    variants_ = [("eager_fp32", FastPathOptions(), False)]
    if not args.dry_run:
        variants_.append(("eager_fp32_tf32", FastPathOptions(), True))
    variants_.append(("fast", all_on, True))
    if args.compile != "none":  # before the ablations: the comparison the issue asks for
        variants_.append(("compile_fp32", FastPathOptions(compile=True), False))
    if not args.quick:
        for name in all_on.enabled[:1] if args.dry_run else all_on.enabled:
            variants_.append((f"fast_without_{name}", replace(all_on, **{name: False}), True))
    if args.compile == "both":
        variants_.append(("compile_fast", replace(all_on, cuda_graph=False, compile=True), True))

    results, reference = {}, None
    for name, options, tf32 in variants_:
        elapsed = time.monotonic() - started
        if options.compile and args.dry_run:
            results[name] = {"skipped": "torch.compile is not run in a dry run"}
            continue
        if elapsed > args.budget_s - (150 if options.compile else 20):
            results[name] = {"skipped": f"time budget: {elapsed:.0f} s of {args.budget_s} s used"}
            continue
        print(f"[{elapsed:6.1f} s]   {name}", flush=True)
        try:
            seg = Segmenter(copy.deepcopy(base), device=str(device), cfg=cfg, fast=options)
            with Precision(tf32):
                res, got = time_segmenter(seg, image, iters, clock)
            res.update(tf32_convolutions=tf32, options=seg.backend.options.enabled)
            if reference is None:
                reference = (seg, got)
            else:
                res.update(compare_to_reference(reference, seg, got, image))
            results[name] = res
        except Exception as exc:  # record and go on: later variants still run
            results[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        seg = None
        if device.type == "cuda":
            torch.cuda.empty_cache()
        save({"variants": results})
    baseline = results.get("eager_fp32", {}).get("e2e", {}).get("median_ms")
    for res in results.values():
        if baseline and "e2e" in res:
            res["speedup_vs_eager_fp32"] = baseline / res["e2e"]["median_ms"]
    return {"config": str(args.config), "image_hw": list(args.image), "iterations": iters, "variants": results}


def breakdown(device, args, clock: Clock) -> dict:
    """Where the fast path's time goes, at the e2e stage's input size, batch 1: the network's
    parts run eagerly in FP16 (backbone, neck, head, in-graph post-processing), the whole in a
    CUDA graph with and without BatchNorm folding, the CUDA kernels of one eager pass that take
    the most time, the Instances step against copying the masks off whole and finding their
    boxes on the host (as it did before the first GPU run), and reading the lazy results: RLE,
    ``to_coco``, all masks, box crops."""
    from csrinfer.model.postprocess import postprocess
    from csrinfer.runtime.cuda_graph import CudaGraphRunner
    from csrinfer.runtime import fastpath
    from csrinfer.runtime.fastpath import FastNet
    from csrinfer.runtime.instances import masks_to_boxes
    from csrinfer.runtime.postprocess import pack_bits, paste_masks, to_instances
    from csrinfer.letterbox import Letterbox, padded_size, resized_size

    cfg, base = paper_model(args)
    gpu = device.type == "cuda"
    resized = resized_size(*args.image, cfg.input.short_side, cfg.input.max_size)
    box = Letterbox(tuple(args.image), resized, padded_size(*resized))
    images = torch.rand(1, 3, *box.padded, device=device) * 255
    fast = FastNet(copy.deepcopy(base).to(device), fp16=gpu, channels_last=gpu, fused=gpu)
    net, runs = fast.net, 3 if args.dry_run else 30
    res = {"input_hw": list(box.padded), "instances_hw": list(box.original)}
    with torch.inference_mode():
        x = (images - net.mean) / net.std
        x = x.to(fast.dtype).contiguous(memory_format=torch.channels_last if gpu else torch.contiguous_format)
        feats = net.backbone(x)
        neck = net.neck(feats)
        head = net.head(neck)
        parts = {"backbone": lambda: net.backbone(x), "neck": lambda: net.neck(feats), "head": lambda: net.head(neck),
                 "in_graph_postprocess": lambda: postprocess(
                     [p.float() for p in head.cate_preds], [k.float() for k in head.kernel_preds],
                     head.mask_feats.float(), net.min_mask_areas, mask_stride=net.stride,
                     **net.inference),
                 "whole_eager": lambda: fast(images)}
        res["eager_parts_ms"] = {name: statistics.median(clock.times(fn, runs)) for name, fn in parts.items()}
        if gpu:
            with mock.patch.object(fastpath, "fold_batch_norms", lambda net: 0):
                unfolded = FastNet(copy.deepcopy(base).to(device), fp16=True, channels_last=True, fused=True)
            for name, model in (("graph", fast), ("graph_without_bn_folding", unfolded)):
                runner = CudaGraphRunner(model)
                res[f"{name}_ms"] = statistics.median(clock.times(lambda: runner(images), runs))
                del runner
        res["top_kernels"] = top_kernels(lambda: fast(images), gpu)
        scores, labels, masks = (t[0] for t in fast(images))
        n = int((scores > 0).sum())
        probs = masks[torch.argsort(scores, descending=True)[:n]].float()
        res["instances"] = n
        res["to_instances_ms"] = statistics.median(clock.wall(lambda: to_instances(scores, labels, masks, box), runs))
        # what reading the lazy results costs (issue 17): each form timed on fresh Instances
        res["read_ms"] = {}
        for form, read in (("rle", lambda inst: inst.rle()), ("to_coco", lambda inst: inst.to_coco(1)),
                           ("masks", lambda inst: inst.masks), ("crops", lambda inst: inst.crops())):
            fresh = iter([to_instances(scores, labels, masks, box) for _ in range(runs + 1)])
            res["read_ms"][form] = statistics.median(clock.wall(lambda: read(next(fresh)), runs))
        res["paste_on_device_ms"] = statistics.median(clock.times(lambda: paste_masks(probs, box), runs))
        pasted = paste_masks(probs, box)
        bits = pack_bits(pasted).cpu().numpy()
        res["to_instances_steps_ms"] = {  # all masks at once (to_instances makes them in chunks)
            "bool_masks_off_device": statistics.median(clock.wall(lambda: pasted.cpu(), runs)),
            "bits_off_device": statistics.median(clock.wall(lambda: pack_bits(pasted).cpu(), runs)),
            "extents_off_device": statistics.median(clock.wall(lambda: (pasted.any(2).cpu(), pasted.any(1).cpu()), runs)),
            "unpack_bits_on_host": statistics.median(clock.wall(
                lambda: np.unpackbits(bits, axis=-1, count=box.original[1]), runs))}
        # what to_instances did before: the masks copied off, then their boxes found on the host
        res["former_host_boxes_ms"] = statistics.median(
            clock.wall(lambda: masks_to_boxes(paste_masks(probs, box).cpu().numpy()), runs))
    return res


def top_kernels(fn, gpu: bool, calls: int = 3, top: int = 15) -> list[dict]:
    """The device kernels (CPU ops on a dry run) of ``fn`` taking the most time, per call."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    with profile(activities=[ProfilerActivity.CUDA if gpu else ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            fn()
        if gpu:
            torch.cuda.synchronize()
    rows = []
    for evt in prof.key_averages():
        us = getattr(evt, "self_device_time_total", None) if gpu else evt.self_cpu_time_total
        if us is None:  # torch before 2.4
            us = evt.self_cuda_time_total
        if us > 0:
            rows.append({"name": evt.key[:120], "ms_per_call": us / 1e3 / calls, "count_per_call": evt.count / calls})
    return sorted(rows, key=lambda r: -r["ms_per_call"])[:top]


def time_segmenter(seg, image, iters: int, clock: Clock) -> tuple[dict, object]:
    """Median times of predict (end to end) and of its three steps, after the first call
    (which compiles, captures or loads the kernel: reported as first_call_s)."""
    t0 = time.monotonic()
    got = seg.predict(image)
    clock.sync()
    first_s = time.monotonic() - t0
    e2e_ms = clock.wall(lambda: seg.predict(image), iters, warmup=2)
    batch, boxes = seg.preprocess([image])
    pre_ms = clock.wall(lambda: seg.preprocess([image]), iters)
    net_ms = clock.wall(lambda: seg.backend.infer({"images": batch}), iters)
    outputs = seg.backend.infer({"images": batch})
    post_ms = clock.wall(lambda: seg.postprocess(outputs, boxes), iters)
    return {"first_call_s": first_s, "e2e": summarize(e2e_ms), "fps": 1e3 / statistics.median(e2e_ms),
            "preprocess": summarize(pre_ms), "network_and_graph_postprocess": summarize(net_ms),
            "to_instances": summarize(post_ms), "instances": len(got)}, got


def compare_to_reference(reference, seg, got, image) -> dict:
    """Against eager FP32: outputs on one shared input tensor (csrinfer.apps.compare, as
    ``csrinfer check``), and each pipeline's own Instances matched by class and mask IoU."""
    from csrinfer.apps.compare import compare, match_instances

    ref_seg, want = reference
    with Precision(False):
        parity = compare(ref_seg, seg, [image])
    pairs = match_instances(want, got)
    diffs = [abs(float(want.scores[i]) - float(got.scores[j])) for i, j, _ in pairs]
    return {"parity_same_input": parity.to_dict(),
            "vs_eager_fp32": {"instances": len(got), "reference_instances": len(want), "matched_iou50": len(pairs),
                              "matched_fraction": len(pairs) / len(want) if len(want) else 1.0,
                              "mask_iou_mean": float(np.mean([p[2] for p in pairs])) if pairs else None,
                              "score_diff_max": max(diffs) if diffs else None}}


# --- report ----------------------------------------------------------------------------------

def machine(device) -> dict:
    info = {"host": platform.node(), "python": platform.python_version(), "torch": torch.__version__,
            "torch_cuda": torch.version.cuda, "device": str(device)}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(gpu=p.name, multiprocessors=p.multi_processor_count, memory_GiB=round(p.total_memory / 2**30, 1),
                    l2_bytes=getattr(p, "L2_cache_size", None), capability=f"{p.major}.{p.minor}")
        try:
            info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                            capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            info["driver"] = None
    else:
        info["gpu"] = None
    try:
        from cuda.bindings import nvrtc

        info["nvrtc"] = ".".join(map(str, nvrtc.nvrtcVersion()[1:]))
    except Exception:  # not installed, or cuda-bindings without libnvrtc (a RuntimeError)
        info["nvrtc"] = None
    return info


def summary_table(res: dict) -> str:
    lines = []
    c = res.get("correctness", {})
    if "checks" in c:
        worst = ", ".join(f"{k} {v:.2e}" for k, v in c["worst_rel_err"].items())
        lines.append(f"correctness: {c['passed']} passed, {c['failed']} failed; worst rel err {worst} "
                     f"(limits fp32 {TOLERANCE['float32']:.0e}, fp16 {TOLERANCE['float16']:.0e})")
    k = res.get("kernel_speed", {})
    if "shapes" in k:
        lines.append(f"copy bandwidth {res.get('copy_bandwidth', {}).get('GBps', float('nan')):.0f} GB/s")
        lines.append(f"{'shape':>18} {'dtype':>7} {'fused us':>9} {'torch us':>9} {'speedup':>8} {'BW frac':>8}"
                     f" {'cold us':>8} {'cold x':>7}  kernel")
        for r in k["shapes"]:
            frac = r["bandwidth_fraction"]
            lines.append(f"{'x'.join(map(str, r['shape'])):>18} {r['dtype']:>7} {r['fused_graph_ms'] * 1e3:9.2f} "
                         f"{r['torch_graph_ms'] * 1e3:9.2f} {r['speedup_graph']:8.2f} "
                         f"{frac if frac is not None else float('nan'):8.2f} "
                         f"{r['fused_cold']['median_ms'] * 1e3:8.2f} {r['speedup_cold']:7.2f}  {r['kernel']}")
    e = res.get("e2e", {}).get("variants", {})
    if e:
        lines.append(f"{'end to end':>24} {'ms':>8} {'FPS':>7} {'x eager':>8} {'pre':>6} {'net':>7} {'inst':>6}"
                     f" {'n':>4} {'IoU match':>9}")
        for name, r in e.items():
            if "e2e" not in r:
                lines.append(f"{name:>24} {r.get('skipped') or r.get('error', '')[:90]}")
                continue
            m = r.get("vs_eager_fp32", {})
            lines.append(f"{name:>24} {r['e2e']['median_ms']:8.2f} {r['fps']:7.1f} "
                         f"{r.get('speedup_vs_eager_fp32', float('nan')):8.2f} {r['preprocess']['median_ms']:6.2f} "
                         f"{r['network_and_graph_postprocess']['median_ms']:7.2f} {r['to_instances']['median_ms']:6.2f} "
                         f"{r['instances']:4d} {m.get('matched_fraction', float('nan')):9.2f}")
    b = res.get("breakdown", {})
    if b:
        parts = ", ".join(f"{k} {v:.2f}" for k, v in b["eager_parts_ms"].items())
        graphs = ", ".join(f"{k[:-3]} {b[k]:.2f}" for k in ("graph_ms", "graph_without_bn_folding_ms") if k in b)
        lines.append(f"breakdown (ms): eager fast parts: {parts}; {graphs}")
        lines.append(f"  Instances of {b['instances']}: to_instances {b['to_instances_ms']:.2f}, paste on device "
                     f"{b['paste_on_device_ms']:.2f}, former host boxes {b['former_host_boxes_ms']:.2f}; "
                     + ", ".join(f"{k} {v:.2f}" for k, v in b["to_instances_steps_ms"].items()))
        lines.append("  reading them (ms): " + ", ".join(f"{k} {v:.2f}" for k, v in b.get("read_ms", {}).items()))
        lines.extend(f"  {k['ms_per_call']:7.3f} ms x{k['count_per_call']:<5g} {k['name'][:90]}" for k in b["top_kernels"][:10])
    for stage, err in res.get("errors", {}).items():
        lines.append(f"{stage}: ERROR {err.splitlines()[-1] if err else ''}")
    return "\n".join(lines)


def parse_args(argv=None):
    from csrinfer.cli.common import parse_hw

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/gpu_kernel_<gpu>.json)")
    p.add_argument("--quick", action="store_true", help="fewer runs, no ablations, FP32 compile only")
    p.add_argument("--dry-run", action="store_true", help="exercise the logic on the CPU with tiny shapes")
    p.add_argument("--config", type=Path, default=None, help="model config (default: the paper's)")
    p.add_argument("--image", type=parse_hw, default=None, help="test image HxW (default 480x800 -> input 800x1344)")
    p.add_argument("--compile", choices=("fp32", "both", "none"), default=None,
                   help="torch.compile variants (default: both; fp32 with --quick)")
    p.add_argument("--budget-s", type=float, default=300.0, help="skip stages that would end after this")
    p.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark for every variant")
    p.add_argument("--skip", nargs="*", default=[], choices=("correctness", "speed", "e2e", "breakdown"))
    args = p.parse_args(argv)
    small = REPO / "models" / "csr_d2s_r18_small.yaml"
    args.config = args.config or (small if args.dry_run else REPO / "models" / "csr_d2s_r50_coco.yaml")
    args.image = args.image or ((72, 120) if args.dry_run else (480, 800))
    args.compile = args.compile or ("fp32" if args.quick else "both")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    threads = torch.get_num_threads()
    try:
        if args.dry_run:  # tiny CPU work: one thread beats several that wait on each other
            torch.set_num_threads(1)
        return run(args)
    finally:
        torch.set_num_threads(threads)


def run(args) -> int:
    started = time.monotonic()
    if args.dry_run:
        device = torch.device("cpu")
    elif not torch.cuda.is_available():
        print("gpu_kernel.py: no CUDA device here; use --dry-run to exercise the script on the CPU", file=sys.stderr)
        return 2
    else:
        device = torch.device("cuda")
        # Off by default: autotuning every convolution shape of each precision variant costs
        # tens of seconds of the run, and cuDNN's heuristics serve all variants alike.
        torch.backends.cudnn.benchmark = args.cudnn_benchmark
    res = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
           "machine": machine(device), "dry_run": args.dry_run, "quick": args.quick, "targets": TARGETS,
           "cudnn_benchmark": torch.backends.cudnn.benchmark, "errors": {}}
    dtypes = [torch.float32, torch.float16] if device.type == "cuda" else [torch.float32]
    l2 = res["machine"].get("l2_bytes") or 50 * 2**20
    # Flush buffer of 8x the L2: reading it evicts the L2 and takes longer (~0.1 ms) than the CPU
    # needs to queue the timed call, so the call's launch cost stays out of its time.
    clock = Clock(device, flush_bytes=0 if args.dry_run else 8 * l2)
    runs = 5 if args.dry_run else (30 if args.quick else 100)

    stages = [
        ("correctness", lambda: correctness(device, dtypes, args.quick, args.dry_run)),
        ("copy_bandwidth", lambda: copy_bandwidth(clock, device, 2**20 if args.dry_run else 2**30, 5 if args.dry_run else 20)),
        ("kernel_speed", lambda: kernel_speed(device, dtypes, clock, res.get("copy_bandwidth", {}).get("GBps"), l2,
                                              runs, args.dry_run, args.quick)),
        ("e2e", lambda: e2e(device, args, clock, started, save=lambda partial: save(e2e=partial))),
        ("breakdown", lambda: breakdown(device, args, clock)),
    ]
    gpu = (res["machine"].get("gpu") or "cpu-dry-run").replace(" ", "_")
    out = args.out or REPO / "benchmarks" / "results" / f"gpu_kernel_{gpu}.json"

    def save(**partial):
        """Write what is known so far: a run stopped by a time limit still leaves its results."""
        from csrinfer import atomic

        snapshot = {**res, **partial, "total_seconds": time.monotonic() - started}
        atomic.write_text(out, json.dumps(snapshot, indent=1, default=str))

    skip = {"speed": ("copy_bandwidth", "kernel_speed")}.get
    skipped = {s for name in args.skip for s in (skip(name) or (name,))}
    for name, stage in stages:
        if name in skipped:
            continue
        t0 = time.monotonic()
        print(f"[{time.monotonic() - started:6.1f} s] {name} ...", flush=True)
        try:
            res[name] = stage()
        except Exception:
            res["errors"][name] = traceback.format_exc()
            print(res["errors"][name], file=sys.stderr, flush=True)
        res.setdefault("stage_seconds", {})[name] = time.monotonic() - t0
        save()
    res["total_seconds"] = time.monotonic() - started
    save()
    print(f"wrote {out} ({res['total_seconds']:.0f} s)")
    print(summary_table(res))
    failed = res["errors"] or res.get("correctness", {}).get("failed", 0)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
