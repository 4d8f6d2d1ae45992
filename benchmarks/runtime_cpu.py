"""Runtime on CPU: ONNX Runtime vs PyTorch eager, and the pre/post-processing share (issue 4).

The paper model (csr_d2s_r50_coco, random weights made to fire so post-processing has up to
100 instances to paste) exported at a static 640x640, run through ``csrinfer.Segmenter`` with
both backends on the same images, the same number of threads, in one process. The variants
are interleaved (ABAB..., order alternating) so that load from other processes on the machine
hits both alike; medians and their ratio are reported, with the load average before and after.

Each prediction is timed in three parts: pre-processing (letterbox + pad of a decoded BGR
image), the backend (network + in-graph post-processing), and post-processing (the
``Instances``: labels, scores, boxes; masks left unread). Reading the masks as RLE and at full
size (upsample, crop, resize, threshold) is timed after it, apart. Writes ``benchmarks/results/runtime_cpu.json``.

    PYTHONPATH=$PWD python benchmarks/runtime_cpu.py [--repeats 10] [--threads 2] [--size 640]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "runtime_cpu.json"


def make_firing(model, alive_classes: int = 8):
    """Random weights that score many cells above the 0.1 threshold (a fresh head's prior gives
    0.01 everywhere and post-processing would have nothing to do)."""
    with torch.no_grad():
        model.head.cate_out.bias.fill_(-30.0)
        model.head.cate_out.bias[:alive_classes] = 0.0
        model.head.cate_out.weight.normal_(0.0, 0.3)
        model.head.kernel_out.weight.normal_(0.0, 0.05)
    return model


def time_once(segmenter, image) -> dict[str, float]:
    t0 = time.perf_counter()
    batch, boxes = segmenter.preprocess([image])
    t1 = time.perf_counter()
    outputs = segmenter.backend.infer({"images": batch})
    t2 = time.perf_counter()
    instances = segmenter.postprocess(outputs, boxes)[0]  # masks unread: labels, scores, boxes
    t3 = time.perf_counter()
    instances.rle()  # what to_coco / eval / Triton read
    t4 = time.perf_counter()
    instances.masks  # every full-size mask
    t5 = time.perf_counter()
    return {"pre": t1 - t0, "backend": t2 - t1, "post": t3 - t2, "total": t3 - t0, "rle": t4 - t3,
            "masks_read": t5 - t4, "instances": len(instances)}


def summarize(runs: list[dict]) -> dict:
    med = {k: statistics.median(r[k] for r in runs) for k in ("pre", "backend", "post", "total", "rle", "masks_read")}
    shares = [(r["pre"] + r["post"]) / r["total"] for r in runs]
    return {
        "median_s": med,
        "post_share_masks_unread_median": statistics.median(r["post"] / r["total"] for r in runs),
        "post_share_masks_read_median": statistics.median((r["post"] + r["masks_read"]) / (r["total"] + r["masks_read"])
                                                          for r in runs),
        "min_total_s": min(r["total"] for r in runs),
        "max_total_s": max(r["total"] for r in runs),
        "pre_post_share_median": statistics.median(shares),
        "instances_median": statistics.median(r["instances"] for r in runs),
        "runs": len(runs),
    }


def machine() -> dict:
    from csrinfer.apps.bench import cpu_name

    return {"cpu": cpu_name(), "logical_cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(REPO / "models" / "csr_d2s_r50_coco.yaml"))
    p.add_argument("--size", type=int, default=640, help="static square input size")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=10, help="timed predictions per backend")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)

    import onnxruntime

    from csrinfer import Segmenter
    from csrinfer.config import load_config
    from csrinfer.export.pipeline import ExportOptions, export_model
    from csrinfer.model import build_model
    from csrinfer.apps.samples import sample_images

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    cfg = load_config(args.config)
    torch.manual_seed(0)
    model = make_firing(build_model(cfg, pretrained=False)).eval()
    size = (args.size, args.size)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        onnx_path = export_model(model, ExportOptions(out_dir=tmp, input_size=size, engine=False), cfg=cfg).onnx
        export_s = time.perf_counter() - t
        variants = {
            "onnxruntime": Segmenter(onnx_path, device="cpu", threads=args.threads),
            "pytorch": Segmenter(model, device="cpu", cfg=cfg, input_size=size),
        }
        images = [image for _, image in sample_images(4)]
        for _ in range(args.warmup):
            for seg in variants.values():
                time_once(seg, images[0])
        runs = {name: [] for name in variants}
        names = list(variants)
        for i in range(args.repeats):
            image = images[i % len(images)]
            for name in (names if i % 2 == 0 else names[::-1]):  # ABBA: neither always goes first
                runs[name].append(time_once(variants[name], image))
            print(f"repeat {i + 1}/{args.repeats}: " + ", ".join(
                f"{n} {runs[n][-1]['total']:.3f}s" for n in names), file=sys.stderr)
    load_after = os.getloadavg()

    summary = {name: summarize(r) for name, r in runs.items()}
    ratio = summary["pytorch"]["median_s"]["total"] / summary["onnxruntime"]["median_s"]["total"]
    result = {
        "benchmark": "runtime_cpu",
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": "PYTHONPATH=$PWD " + " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "model": cfg.name,
        "input": f"{args.size}x{args.size} static, batch 1, images: scikit-image sample photos (or synthetic)",
        "threads": args.threads,
        "export_seconds": export_s,
        "results": summary,
        "pytorch_over_onnxruntime_total": ratio,
        "targets": {
            "onnxruntime_at_least_as_fast": ratio >= 1.0,
            "pre_post_share_under_10pct": {n: s["pre_post_share_median"] < 0.10 for n, s in summary.items()},
        },
    }
    out = Path(args.out)
    from csrinfer import atomic

    atomic.write_json(out, result)
    for name, s in summary.items():
        m = s["median_s"]
        print(f"{name:12s} total {m['total']:.3f}s  backend {m['backend']:.3f}s  pre {m['pre'] * 1e3:.1f}ms  "
              f"post {m['post'] * 1e3:.1f}ms  pre+post {100 * s['pre_post_share_median']:.1f}%  "
              f"instances {s['instances_median']:.0f}")
    print(f"PyTorch / ONNX Runtime (median end-to-end): {ratio:.2f}x; load average {load_before} -> {load_after}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
