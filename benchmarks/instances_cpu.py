"""Instances on the CPU: the lazy contract (masks kept at the feature stride, pasted when read)
against the former one (every mask pasted to full size at once), on the same network outputs.

100 object-like masks (Gaussian blobs of random centre and size, probabilities at stride 8) for
an 800x1344 image (its own padded size), as ONNX Runtime returns them. Variants, interleaved in
rounds (order rotating) so load from other processes hits them alike:

- ``former``: paste all masks to full size, boxes from them (what ``to_instances`` did before);
- ``former+rle``: that, then pycocotools RLE of every mask (the former ``to_coco``);
- ``lazy``: ``to_instances`` with masks unread (labels, scores, boxes);
- ``lazy+rle``: that, then ``Instances.rle()``;
- ``lazy+masks``: that, then ``Instances.masks`` (all full-size masks).

Writes medians, ratios to ``former`` and the machine (lscpu model and flags, load average) to
``benchmarks/results/instances_cpu.json``.

    PYTHONPATH=$PWD python benchmarks/instances_cpu.py [--rounds 7] [--threads 2]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "instances_cpu.json"


def blobs(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """float32 [n, height, width] probabilities: one Gaussian bump per mask, peak 0.95."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    cy, cx = rng.uniform(0, height, n), rng.uniform(0, width, n)
    sy, sx = rng.uniform(1.0, height / 4, n), rng.uniform(1.0, width / 4, n)
    out = np.empty((n, height, width), np.float32)
    for i in range(n):
        out[i] = 0.95 * np.exp(-0.5 * (((y - cy[i]) / sy[i]) ** 2 + ((x - cx[i]) / sx[i]) ** 2))
    return out


def machine() -> dict:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
    return {"cpu": fields.get("Model name", "").strip(), "cores": os.cpu_count(),
            "flags": sorted(f for f in fields.get("Flags", "").split() if f.startswith(("avx", "amx", "fma"))),
            "python": platform.python_version()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--instances", type=int, default=100)
    p.add_argument("--results", default=str(RESULTS))
    args = p.parse_args(argv)

    import torch
    from pycocotools import mask as mask_utils

    from csrinfer.boxes import masks_to_boxes
    from csrinfer.letterbox import Letterbox
    from csrinfer.runtime.paste import paste_masks
    from csrinfer.runtime.postprocess import to_instances

    torch.set_num_threads(args.threads)
    h, w, stride = 800, 1344, 8
    box = Letterbox((h, w), (h, w), (h, w))
    probs = blobs(args.instances, h // stride, w // stride)
    scores = np.linspace(0.9, 0.2, args.instances).astype(np.float32)
    labels = np.arange(args.instances) % 5

    def former(rle: bool = False):
        masks = np.empty((args.instances, h, w), bool)
        for start in range(0, args.instances, 14):  # the former chunking (16 M pixels)
            masks[start:start + 14] = paste_masks(torch.from_numpy(probs[start:start + 14]), box).numpy()
        boxes = masks_to_boxes(masks)
        if rle:
            mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0)))
        return boxes

    def lazy(read: str = ""):
        inst = to_instances(scores, labels, probs, box)
        if read == "rle":
            inst.rle()
        elif read == "masks":
            inst.masks
        return inst.boxes

    variants = {"former": former, "former+rle": lambda: former(True), "lazy": lazy,
                "lazy+rle": lambda: lazy("rle"), "lazy+masks": lambda: lazy("masks")}
    np.testing.assert_array_equal(former(), lazy())  # the same boxes, or the timing means nothing
    times = {name: [] for name in variants}
    load_before = os.getloadavg()
    names = list(variants)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            variants[name]()
            times[name].append(1000 * (time.perf_counter() - t0))
    medians = {name: statistics.median(v) for name, v in times.items()}
    result = {
        "benchmark": "Instances of 100 masks for an 800x1344 image on the CPU: lazy contract vs former",
        "date": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        "command": "PYTHONPATH=$PWD python benchmarks/instances_cpu.py " + shlex.join(argv or sys.argv[1:]),
        "machine": machine(), "threads": args.threads, "rounds": args.rounds,
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "median_ms": medians, "min_ms": {name: min(v) for name, v in times.items()}, "runs_ms": times,
        "ratio_to_former": {name: medians[name] / medians["former"] for name in variants},
        "bytes_held_unread": int(probs.nbytes), "bytes_full_masks": args.instances * h * w,
    }
    import json

    from csrinfer import atomic

    atomic.atomic_write(args.results, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1)))
    print(json.dumps({"median_ms": medians, "ratio_to_former": result["ratio_to_former"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
