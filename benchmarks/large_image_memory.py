"""Peak memory of one very large photo through the small model (issue 17: under 2 GB RSS).

A 9000x6000 image (the user's report: 72 s and 8.8 GB with the former full-size masks) goes
through ``Segmenter.predict`` with ``models/csr_d2s_r18_small.yaml`` (random weights made to fire,
so the model keeps its 100 instances). Each step runs in a fresh process so its peak is its own:

- ``boxes``: predict, read labels, scores and boxes;
- ``rle``: predict, then ``to_coco`` (RLE);
- ``masks``: predict, then every full-size mask (what the former contract always held).

Writes peak RSS (``ru_maxrss``), wall time and instance counts to
``benchmarks/results/large_image_memory.json``.

    PYTHONPATH=$PWD python benchmarks/large_image_memory.py [--height 6000 --width 9000]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "large_image_memory.json"


def one_step(step: str, height: int, width: int) -> dict:
    import numpy as np
    import torch

    from csrinfer.apps.samples import synthetic_image
    from csrinfer.config import load_config
    from csrinfer.model import build_model
    from csrinfer.runtime.segmenter import Segmenter

    torch.manual_seed(0)
    cfg = load_config(REPO / "models" / "csr_d2s_r18_small.yaml")
    model = build_model(cfg).eval()
    with torch.no_grad():  # fire: many cells above the score cut, as a trained model on a busy photo
        model.head.cate_out.bias.fill_(-30.0)
        model.head.cate_out.bias[:2] = 0.0
        model.head.cate_out.weight.normal_(0.0, 0.3)
    image = synthetic_image(0, height, width)
    segmenter = Segmenter(model, "cpu", cfg=cfg, max_pixels=height * width)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    inst = segmenter.predict(image)
    read = {"boxes": lambda: inst.boxes, "rle": lambda: inst.to_coco(1), "masks": lambda: inst.masks}[step]
    read()
    seconds = time.perf_counter() - t0
    return {"step": step, "instances": len(inst), "seconds": round(seconds, 2),
            "peak_rss_mb_before_predict": round(rss_before / 1024, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "image_bytes_mb": round(image.nbytes / 2**20, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--height", type=int, default=6000)
    p.add_argument("--width", type=int, default=9000)
    p.add_argument("--results", default=str(RESULTS))
    p.add_argument("--step", default=None, help=argparse.SUPPRESS)  # the child process's one step
    args = p.parse_args(argv)
    if args.step:
        print(json.dumps(one_step(args.step, args.height, args.width)))
        return 0
    steps = []
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2"}
    for step in ("boxes", "rle", "masks"):
        out = subprocess.run([sys.executable, __file__, "--step", step, "--height", str(args.height),
                              "--width", str(args.width)], capture_output=True, text=True, env=env, check=True)
        steps.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(steps[-1], flush=True)
    from csrinfer import atomic

    result = {
        "benchmark": f"peak RSS of one {args.width}x{args.height} image through the small model, per read",
        "target": "boxes and rle under 2048 MB",
        "date": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        "command": "PYTHONPATH=$PWD python benchmarks/large_image_memory.py " + shlex.join(argv or sys.argv[1:]),
        "cpu": subprocess.run(["lscpu"], capture_output=True, text=True).stdout.split("Model name:")[-1].splitlines()[0].strip(),
        "load_average": os.getloadavg(),
        "steps": steps,
    }
    atomic.atomic_write(args.results, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
