"""A/B: how ``Instances.boxes`` is found on the CPU from lazy masks (issue 17's post-processing share).

Three ways to the same boxes, each checked equal to the others, timed interleaved on the same
masks (every way once per round, order alternating), medians reported:

- ``edges`` (csrinfer today): per mask, lines scanned inward from each side of its candidate
  region until the first one with a pixel above the threshold;
- ``regions`` (before): per mask, every pixel of its candidate region computed (a box-sized product);
- ``full_paste`` (before, for noisy masks): all masks pasted at full size a chunk at a time, the
  rows' and columns' extents taken.

Two kinds of masks, 100 each: ``noisy`` (an untrained model's: random cells, above the
threshold all over; the paper model's random-weight masks of runtime_cpu.py look like this) and
``objects`` (smooth blobs of varied size, as a trained model's). Writes
``benchmarks/results/lazy_boxes_ab_cpu.json`` with the machine, lscpu flags, load and command.

    PYTHONPATH=$PWD python benchmarks/lazy_boxes_ab.py [--rounds 7] [--size 640x640] [--threads 2]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "lazy_boxes_ab_cpu.json"


def masks_of(kind: str, n: int, box, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hs, ws = box.padded[0] // 8, box.padded[1] // 8
    if kind == "noisy":
        return (rng.random((n, hs, ws)) * rng.uniform(0.55, 1.2, (n, 1, 1))).astype(np.float32)
    probs = np.zeros((n, hs, ws), np.float32)
    for p in probs:  # a blob of 4-40 % of the image's side, somewhere in it
        bh, bw = (int(rng.uniform(0.04, 0.4) * d) + 2 for d in (hs, ws))
        y, x = rng.integers(0, hs - bh), rng.integers(0, ws - bw)
        coarse = torch.from_numpy(rng.random((1, 1, 4, 4)).astype(np.float32) + 0.3)
        p[y:y + bh, x:x + bw] = F.interpolate(coarse, size=(bh, bw), mode="bilinear")[0, 0].numpy()
    return probs


def boxes_by_regions(store) -> np.ndarray:
    from csrinfer.runtime.masks import _box_of, _tight

    boxes = np.zeros((len(store), 4), np.float32)
    for i, region in enumerate(store._candidate_regions()):
        if region is None:
            continue
        y0, y1, x0, x1 = region
        sure, unsure = store._region(i, y0, y1, x0, x1)
        low, high = _tight(sure & ~unsure), _tight(sure | unsure)
        if low != high:
            boxes[i] = _box_of(store.mask(i))
        elif low is not None:
            boxes[i] = (x0 + low[2], y0 + low[0], x0 + low[3], y0 + low[1])
    return boxes


def cpu_flags() -> str:
    text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    return next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Flags")), "")


def main(argv=None) -> int:
    from csrinfer import atomic
    from csrinfer.apps.bench import cpu_name
    from csrinfer.cli.common import parse_hw
    from csrinfer.letterbox import Letterbox, padded_size, resized_size
    from csrinfer.runtime.masks import LazyMasks

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--size", type=parse_hw, default=(640, 640), help="image HxW (letterboxed as the runtime does)")
    p.add_argument("--instances", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    h, w = args.size
    resized = resized_size(h, w, 800, 1333)
    box = Letterbox((h, w), resized, padded_size(*resized))
    ways = {"edges": lambda s: s.boxes(), "regions": boxes_by_regions,
            "full_paste": lambda s: s.boxes_from_full_paste()}
    results = {}
    for kind in ("noisy", "objects"):
        probs = masks_of(kind, args.instances, box, seed=1)
        fresh = lambda: LazyMasks(probs, box)  # noqa: E731  (a new store: no cached products)
        answers = {name: way(fresh()) for name, way in ways.items()}
        for name, boxes in answers.items():
            np.testing.assert_array_equal(boxes, answers["full_paste"], err_msg=f"{kind}: {name}")
        times = {name: [] for name in ways}
        for r in range(args.rounds):
            for name in (list(ways) if r % 2 == 0 else list(reversed(ways))):
                store = fresh()
                t0 = time.perf_counter()
                ways[name](store)
                times[name].append((time.perf_counter() - t0) * 1e3)
        medians = {name: statistics.median(ms) for name, ms in times.items()}
        results[kind] = {"median_ms": {k: round(v, 2) for k, v in medians.items()},
                         "edges_speedup_vs": {k: round(v / medians["edges"], 2) for k, v in medians.items() if k != "edges"},
                         "all_ms": {k: [round(v, 2) for v in ms] for k, ms in times.items()},
                         "masks_with_pixels": int((answers["edges"][:, 2] > answers["edges"][:, 0]).sum())}
        print(kind, results[kind]["median_ms"], "edges faster by", results[kind]["edges_speedup_vs"], flush=True)
    report = {
        "what": "Instances.boxes from lazy masks on the CPU: three ways, same boxes, interleaved rounds",
        "image": [h, w], "letterbox": {"resized": list(box.resized), "padded": list(box.padded)},
        "instances": args.instances, "rounds": args.rounds, "threads": args.threads, "results": results,
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "lscpu_flags": cpu_flags()},
        "torch": torch.__version__, "numpy": np.__version__,
        "loadavg_start": [round(v, 2) for v in load_start], "loadavg_end": [round(v, 2) for v in os.getloadavg()],
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python", *sys.argv]),
    }
    print(f"wrote {atomic.write_json(args.out, report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
