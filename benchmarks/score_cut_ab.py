"""Mask AP of one checkpoint with and without a second score cut after the graph's own thresholds.

Until 2026-11-26 ``Segmenter`` kept only instances scoring above 0.1 *after* the graph had
applied the model's thresholds (category score > 0.1, decayed score >= 0.05, as mmdetection's
SOLOv2); now it keeps every instance the graph returns. This evaluates the same checkpoint both
ways on the same split, in one run, and writes JSON:

    PYTHONPATH=$PWD python benchmarks/score_cut_ab.py --ckpt final.pth --data shapes \\
        --out benchmarks/results/score_cut_ab_cpu.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from csrinfer import Segmenter, atomic
from csrinfer.apps.bench import command_line, cpu_name, now_iso
from csrinfer.apps.evaluation import METRICS, evaluate_checkpoint


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True, help="a trained .pth")
    p.add_argument("--data", required=True, help="COCO-format folder; its val split is evaluated")
    p.add_argument("--out", required=True, type=Path, help="JSON to write")
    args = p.parse_args(argv)
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, cut in (("second_cut_at_0.1_before", 0.1), ("graph_thresholds_only_now", None)):
            results = Path(tmp) / f"{name}.json"
            report = evaluate_checkpoint(Segmenter(args.ckpt, device="cpu", score_thr=cut), args.data, "val",
                                         out=results, progress=False)
            runs[name] = {k: None if report[k] is None else round(100 * report[k], 2) for k in METRICS}
            runs[name]["detections"] = len(json.loads(results.read_text()))
            print(name, runs[name], flush=True)
    out = {"runs": runs, "images": report["images"], "checkpoint": args.ckpt, "data": args.data,
           "machine": f"{cpu_name()}, evaluated on the CPU", "date": now_iso(), "command": command_line()}
    atomic.write_json(args.out, out, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
