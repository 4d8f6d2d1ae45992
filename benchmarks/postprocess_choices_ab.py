"""Two post-processing choices of csrinfer against mmdetection's order, on one trained checkpoint.

1. The local-maximum filter (``points_nms``) compares *logits*; mmdetection's SOLOv2 compares
   sigmoid probabilities, where neighbours whose logits differ can tie once sigmoid saturates
   (both then survive).
2. The graph takes the top ``nms_pre`` (cell, class) scores *before* the 0.1 score cut (a fixed
   candidate count); mmdetection cuts at 0.1 first, keeps every passing cell and ranks after
   rescoring. Both give the same candidates whenever at most ``nms_pre`` cells pass the cut.

For every val image the head runs once; the post-processing then runs as csrinfer does, with
the probability comparison, and with every cell a candidate (so nothing is cut before the
score threshold). The JSON gives how many images' outputs differ from csrinfer's and by how
much, and how many cells passed the score cut (the largest count against ``nms_pre``)::

    PYTHONPATH=$PWD python benchmarks/postprocess_choices_ab.py --ckpt final.pth --data shapes \\
        --out benchmarks/results/postprocess_choices_ab_cpu.json
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2
import torch
import torch.nn.functional as F

from csrinfer import atomic
from csrinfer.apps.bench import command_line, cpu_name, now_iso
from csrinfer.model.checkpoint import load_checkpoint
from csrinfer.model import postprocess as pp
from csrinfer.runtime.segmenter import Segmenter


def points_nms_on_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """mmdetection's filter: the 2x2 max pool on sigmoid probabilities."""
    probs = logits.sigmoid()
    lmax = F.max_pool2d(probs, kernel_size=2, stride=1, padding=1)[:, :, :-1, :-1]
    return probs * (lmax == probs).to(probs.dtype)


def run(model, head, **overrides):
    kwargs = {**model.inference, **overrides}
    return pp.postprocess([p.float() for p in head.cate_preds], [k.float() for k in head.kernel_preds],
                          head.mask_feats.float(), model.min_mask_areas, mask_stride=model.stride, **kwargs)


def differ(a, b) -> dict:
    """Do two outputs hold the same instances? (Empty slots, score 0, hold arbitrary masks.)"""
    (sa, la, ma), (sb, lb, mb) = a, b
    na, nb = int((sa > 0).sum()), int((sb > 0).sum())
    n = max(na, nb)
    same = na == nb and torch.equal(sa[:, :n], sb[:, :n]) and torch.equal(la[:, :n], lb[:, :n]) \
        and torch.equal(ma[:, :n], mb[:, :n])
    return {"identical": same, "instances": [na, nb],
            "max_score_diff": float((sa[:, :n] - sb[:, :n]).abs().max()) if n else 0.0}


def mask_ap_each_way(args, cfg, cells: int) -> dict:
    """Mask AP (%) of the val split as csrinfer post-processes, with the probability comparison,
    and with every (cell, class) a candidate (a copy of the checkpoint whose nms_pre is all)."""
    import tempfile

    import torch as _torch

    from csrinfer.model.checkpoint import read_checkpoint
    from csrinfer.apps.evaluation import METRICS, evaluate_checkpoint

    def ap(model_file, out):
        report = evaluate_checkpoint(model_file, args.data, "val", out=out, device="cpu", progress=False)
        return {k: None if report[k] is None else round(100 * report[k], 2) for k in METRICS}

    with tempfile.TemporaryDirectory() as tmp:
        runs = {"csrinfer": ap(args.ckpt, Path(tmp) / "a.json")}
        real = pp.points_nms
        pp.points_nms = points_nms_on_probabilities
        try:
            runs["local_max_on_probabilities"] = ap(args.ckpt, Path(tmp) / "b.json")
        finally:
            pp.points_nms = real
        payload = read_checkpoint(args.ckpt)
        payload["config"]["inference"]["nms_pre"] = cells
        every = Path(tmp) / "every_candidate.pth"
        _torch.save(payload, every)
        runs["every_cell_a_candidate"] = ap(every, Path(tmp) / "c.json")
    return runs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--data", required=True, help="COCO-format folder; its val images are used")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--limit", type=int, default=None, help="at most this many val images")
    p.add_argument("--ap", action="store_true", help="also mask AP of the whole val split, each way")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    model, cfg, _ = load_checkpoint(args.ckpt)
    seg = Segmenter(args.ckpt, device="cpu")
    images = sorted((Path(args.data) / "val").glob("*.png"))[: args.limit]
    score_thr, nms_pre = cfg.inference.score_thr, cfg.inference.nms_pre
    stats = {"logits_vs_probabilities": [], "topk_before_cut_vs_all_candidates": [], "cells_above_score_thr": []}
    with torch.no_grad():
        for path in images:
            batch, _ = seg.preprocess([cv2.imread(str(path))])
            head = model(torch.as_tensor(batch))
            ours = run(model, head)
            real = pp.points_nms
            pp.points_nms = points_nms_on_probabilities
            try:
                probs_variant = run(model, head)
                passing = sum(int((points_nms_on_probabilities(c.float()) > score_thr).sum()) for c in head.cate_preds)
            finally:
                pp.points_nms = real
            cells = sum(c.shape[1] * c.shape[2] * c.shape[3] for c in head.cate_preds)
            all_candidates = run(model, head, nms_pre=cells)
            stats["logits_vs_probabilities"].append(differ(ours, probs_variant))
            stats["topk_before_cut_vs_all_candidates"].append(differ(ours, all_candidates))
            stats["cells_above_score_thr"].append(passing)

    def summary(rows):
        return {"images": len(rows), "identical": sum(r["identical"] for r in rows),
                "max_score_diff": max((r["max_score_diff"] for r in rows), default=0.0),
                "instances_differ": sum(r["instances"][0] != r["instances"][1] for r in rows)}

    passing = stats["cells_above_score_thr"]
    result = {
        "checkpoint": args.ckpt, "data": args.data, "images": len(images), "nms_pre": nms_pre, "score_thr": score_thr,
        "logits_vs_probabilities": summary(stats["logits_vs_probabilities"]),
        "topk_before_cut_vs_all_candidates": summary(stats["topk_before_cut_vs_all_candidates"]),
        "cells_above_score_thr": {"max": max(passing, default=0), "median": sorted(passing)[len(passing) // 2]
                                  if passing else 0, "images_above_nms_pre": sum(n > nms_pre for n in passing)},
        "machine": f"{cpu_name()}, CPU", "loadavg": [round(v, 2) for v in os.getloadavg()], "date": now_iso(),
        "command": command_line(),
    }
    if args.ap:
        result["mask_ap"] = mask_ap_each_way(args, cfg, cells)
    atomic.write_json(args.out, result)
    print(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
