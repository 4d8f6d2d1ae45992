"""What a trained small model has and has not learnt (issue 3): where the synthetic benchmark's AP goes.

For a checkpoint and the synthetic (or any COCO-format) dataset it measures

- the category branch's confusion matrix on the positive cells of training images (the cells
  whose class the loss teaches; rows: target class, columns: argmax of the branch);
- linear probes: a logistic regression fitted on three quarters of the objects of training
  images, tested on the rest, from (a) the fused feature F at each object's centre cell — what
  the category branch reads — and (b) F, C3 and C5 averaged over each object's mask. If even
  (b) is near chance, the features do not hold the shape yet; if (b) is high and (a) low, the
  shape is there but not where SOLO's category branch looks;
- from the val results of ``csrinfer eval`` (``--results``): the mask AP, the class-agnostic AP
  (``useCats=0``), and the class-agnostic AP after keeping only the best-scored of predictions
  overlapping at mask IoU > 0.5 — about the AP the masks would give if every class were right.

Writes one JSON (default ``benchmarks/results/train_diagnose_cpu.json``)::

    PYTHONPATH=$PWD python benchmarks/train_diagnose.py --ckpt RUN/final.pth --data DATA \\
        --results RUN/results_val.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True, help="a checkpoint of the small config (final.pth)")
    p.add_argument("--data", required=True, help="the COCO-format folder it was trained on")
    p.add_argument("--results", help="COCO results JSON of the val split (from csrinfer eval)")
    p.add_argument("--images", type=int, default=480, help="training images for the probes")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "train_diagnose_cpu.json"))
    return p.parse_args(argv)


def _training_batches(cfg, data, first: int, count: int, batch: int = 8):
    """Batches of training images ``first..first+count`` with the training transform and targets."""
    from csrinfer.train.loop import _train_dataset
    from csrinfer.train.targets import TrainCollate

    dataset = _train_dataset(cfg, data)
    collate = TrainCollate(cfg.model.num_classes, cfg.model.num_grids, cfg.model.scale_ranges, cfg.train.pos_scale,
                           8, cfg.input.size_divisor)
    first = min(first, max(0, len(dataset) - count))
    for start in range(first, min(first + count, len(dataset)), batch):
        yield collate([dataset[i] for i in range(start, min(start + batch, len(dataset)))])


def category_confusion(model, cfg, data, first: int = 1000, count: int = 64):
    """int64 [C, C]: target class (rows) against the category branch's argmax (columns) on the
    positive cells of ``count`` training images."""
    import torch

    c = cfg.model.num_classes
    confusion = torch.zeros(c, c, dtype=torch.int64)
    with torch.no_grad():
        for batch in _training_batches(cfg, data, first, count):
            out = model(batch.images)
            logits = torch.cat([p.permute(0, 2, 3, 1).reshape(-1, c) for p in out.cate_preds])
            labels = torch.cat([lab.reshape(-1) for lab in batch.targets.cate_labels])
            pos = labels < c
            confusion += torch.bincount(labels[pos] * c + logits[pos].argmax(1), minlength=c * c).reshape(c, c)
    return confusion


def object_features(model, cfg, data, count: int):
    """Per object of ``count`` training images: {probe name: float [N, D]} and labels int64 [N]."""
    import torch
    import torch.nn.functional as F

    feats = {"F_centre_cell": [], "F_mask_mean": [], "C3_mask_mean": [], "C5_mask_mean": []}
    labels = []
    with torch.no_grad():
        for batch in _training_batches(cfg, data, 0, count):
            x = (batch.images - model.mean) / model.std
            c3, c4, c5 = model.backbone(x)
            fused = model.neck((c3, c4, c5))
            for i, masks in enumerate(batch.masks):
                if not len(masks):
                    continue
                for name, fmap in (("F", fused[i]), ("C3", c3[i]), ("C5", c5[i])):
                    cover = F.adaptive_avg_pool2d(masks[:, None].float(), fmap.shape[-2:])[:, 0]  # [N, h, w]
                    feats[f"{name}_mask_mean"].append(
                        torch.einsum("nhw,chw->nc", cover, fmap) / cover.sum((1, 2)).clamp(min=1e-6)[:, None])
                    if name == "F":
                        feats["F_centre_cell"].append(fmap.flatten(1)[:, cover.flatten(1).argmax(1)].T)
                labels.append(batch.labels[i])
    return {k: torch.cat(v) for k, v in feats.items()}, torch.cat(labels)


def probe_accuracy(x, y, num_classes: int, train_fraction: float = 0.75) -> float:
    """Held-out accuracy of an L2-regularised logistic regression (L-BFGS) from x [N, D] to y."""
    import torch
    import torch.nn.functional as F

    n_train = int(train_fraction * len(y))
    mean, std = x[:n_train].mean(0), x[:n_train].std(0) + 1e-6
    x = (x - mean) / std
    w = torch.zeros(x.shape[1], num_classes, requires_grad=True)
    b = torch.zeros(num_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x[:n_train] @ w + b, y[:n_train]) + 1e-3 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        return float(((x[n_train:] @ w + b).argmax(1) == y[n_train:]).float().mean())


def keep_best_of_overlapping(results: list[dict], iou: float = 0.5) -> list[dict]:
    """Per image, the predictions in score order, each dropped if its mask overlaps an already
    kept one (any class) at IoU > ``iou``."""
    from pycocotools import mask as mask_utils

    kept, by_image = [], {}
    for r in results:
        by_image.setdefault(r["image_id"], []).append(r)
    for rows in by_image.values():
        chosen = []
        for r in sorted(rows, key=lambda r: -r["score"]):
            segs = [c["segmentation"] for c in chosen]
            if segs and mask_utils.iou([r["segmentation"]], segs, [0] * len(segs)).max() > iou:
                continue
            chosen.append(r)
        kept += chosen
    return kept


def class_agnostic_ap(gt_file, results: list[dict]) -> dict:
    """AP and AP50 with classes ignored (pycocotools ``useCats=0``)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not results:
        return {"AP": 0.0, "AP50": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        ev = COCOeval(gt, gt.loadRes([dict(r) for r in results]), "segm")  # loadRes adds keys
        ev.params.useCats = 0
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"AP": float(ev.stats[0]), "AP50": float(ev.stats[1])}


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from csrinfer.apps.bench import cpu_name
    from csrinfer import atomic
    from csrinfer.model.checkpoint import load_checkpoint
    from csrinfer.apps.evaluation import coco_metrics

    torch.set_num_threads(args.threads)
    model, cfg, _ = load_checkpoint(args.ckpt)
    model.eval()
    c = cfg.model.num_classes
    confusion = category_confusion(model, cfg, args.data)
    feats, labels = object_features(model, cfg, args.data, args.images)
    report = {
        "checkpoint": str(args.ckpt), "classes": list(cfg.classes), "chance_accuracy": round(1 / c, 3),
        "category_branch": {
            "confusion_rows_target_cols_predicted": confusion.tolist(),
            "accuracy": round(float(confusion.trace() / confusion.sum().clamp(min=1)), 3),
        },
        "linear_probe_accuracy": {k: round(probe_accuracy(v, labels, c), 3) for k, v in feats.items()},
        "probe_objects": int(len(labels)),
    }
    if args.results:
        gt = Path(args.data) / "annotations" / "instances_val.json"
        results = json.loads(Path(args.results).read_text())
        report["val"] = {
            "mask_AP": coco_metrics(gt, results)["AP"],
            "class_agnostic": class_agnostic_ap(gt, results),
            "class_agnostic_best_of_overlapping": class_agnostic_ap(gt, keep_best_of_overlapping(results)),
        }
    report.update(machine={"cpu": cpu_name(), "cores": os.cpu_count()},
                  date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  command="python benchmarks/train_diagnose.py " + " ".join(
                      shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_json(out, report, indent=1)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
