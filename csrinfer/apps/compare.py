"""Parity between two backends on the same inputs (``csrinfer check``), Polygraphy-comparator style.

Both models see the very same padded input tensor, so raw outputs can be compared slot by
slot (max abs error per output) and final instances can be matched one to one (same class,
greatest mask IoU): mask IoU mean/min, score differences, and images whose instance counts
differ.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import numpy as np

from csrinfer.errors import ConfigError, ImageError
from csrinfer.runtime.backends import load_backend
from csrinfer.image_io import MAX_PIXELS, load_image
from csrinfer.runtime.instances import Instances
from csrinfer.runtime.segmenter import Segmenter


@dataclass
class ParityReport:
    """What ``compare`` found over all images (IoU and score fields cover matched instances)."""

    images: int = 0
    max_abs_error: dict[str, float] = field(default_factory=dict)  # per output, slots with a score in either
    label_mismatches: int = 0  # output slots whose labels differ while both score above 0
    instances_a: int = 0
    instances_b: int = 0
    matched: int = 0
    mask_iou_mean: float = math.nan
    mask_iou_min: float = math.nan
    score_diff_mean: float = math.nan
    score_diff_max: float = math.nan
    count_mismatches: int = 0  # images where the two found different numbers of instances
    failures: list[str] = field(default_factory=list)  # inputs that could not be read, one sentence each

    @property
    def inconclusive(self) -> bool:
        """Neither model found anything: two unrelated models would agree as well."""
        return self.instances_a == self.instances_b == 0

    def passed(self, score_tol: float = 1e-3, min_iou: float = 0.99) -> bool:
        """Same counts, every instance matched, scores within ``score_tol``, IoU at least ``min_iou``."""
        if self.failures or self.images == 0 or self.count_mismatches or self.inconclusive:
            return False
        if self.matched != self.instances_a or self.matched != self.instances_b:
            return False
        return self.matched == 0 or (self.score_diff_max <= score_tol and self.mask_iou_min >= min_iou)

    def lines(self) -> list[str]:
        errors = ", ".join(f"{k} {v:.3g}" for k, v in self.max_abs_error.items())
        return [
            f"images                 {self.images}",
            f"max abs error          {errors}",
            f"label mismatches       {self.label_mismatches} output slots",
            f"instances              {self.instances_a} vs {self.instances_b}, {self.matched} matched",
            f"count mismatches       {self.count_mismatches} images",
            f"mask IoU (matched)     mean {self.mask_iou_mean:.4f}, min {self.mask_iou_min:.4f}",
            f"score diff (matched)   mean {self.score_diff_mean:.2e}, max {self.score_diff_max:.2e}",
        ] + [f"unreadable             {sentence}" for sentence in self.failures] + (
            ["nothing compared       neither model found an instance on these images; give --images "
             "with objects the models know"] if self.inconclusive else [])

    def to_dict(self) -> dict:
        return asdict(self)


def parity_segmenters(model_a, model_b, device: str | None = None, fast=None, **options_b) -> tuple[Segmenter, Segmenter]:
    """Two Segmenters that letterbox identically: into the static size of either model if one has one.

    ``fast`` (the PyTorch speed switches, ``Segmenter``'s ``fast=``) and ``options_b``
    (``runtime="openvino", precision="bf16"``, ...) apply to ``model_b``, the one under test.
    """
    if fast:
        options_b["fast"] = fast
    a, b = load_backend(model_a, device), load_backend(model_b, device, **options_b)
    sizes = {tuple(x.info.input_size) for x in (a, b) if x.info.input_size is not None}
    if len(sizes) > 1:
        raise ConfigError(f"the two models have different static input sizes ({' and '.join(map(str, sizes))}); "
                          f"compare models exported at the same size")
    for what, get in (("classes", lambda x: list(x.info.class_names)),
                      ("output slots (max_per_img)", lambda x: x.info.inference.get("max_per_img"))):
        if get(a) != get(b):
            raise ConfigError(f"the two models have different {what} ({get(a)} vs {get(b)}); check compares two "
                              "forms of one model")
    size = sizes.pop() if sizes else None
    return Segmenter(a, input_size=size), Segmenter(b, input_size=size)


def compare(a: Segmenter, b: Segmenter, images: Iterable, min_match_iou: float = 0.5,
            max_pixels: int = MAX_PIXELS) -> ParityReport:
    """Run ``a`` and ``b`` on the same input tensors and report how far apart they are; image
    files claiming more than ``max_pixels`` are listed as failures."""
    report = ParityReport()
    ious, diffs = [], []
    for image in images:
        try:
            bgr = load_image(image, max_pixels)
        except ImageError as e:  # the other images are still compared
            report.failures.append(str(e))
            continue
        batch, boxes = a.preprocess([bgr])
        out_a = _numpy(a.backend.infer({"images": _fit_batch(batch, a.info.batch)}))
        out_b = _numpy(b.backend.infer({"images": _fit_batch(batch, b.info.batch)}))
        _compare_outputs(out_a, out_b, report)
        inst_a, inst_b = a.postprocess(out_a, boxes)[0], b.postprocess(out_b, boxes)[0]
        pairs = match_instances(inst_a, inst_b, min_match_iou)
        ious += [iou for _, _, iou in pairs]
        diffs += [abs(float(inst_a.scores[i]) - float(inst_b.scores[j])) for i, j, _ in pairs]
        report.images += 1
        report.instances_a += len(inst_a)
        report.instances_b += len(inst_b)
        report.count_mismatches += int(len(inst_a) != len(inst_b))
    report.matched = len(ious)
    if ious:
        report.mask_iou_mean, report.mask_iou_min = float(np.mean(ious)), float(np.min(ious))
        report.score_diff_mean, report.score_diff_max = float(np.mean(diffs)), float(np.max(diffs))
    return report


def match_instances(a: Instances, b: Instances, min_iou: float = 0.5) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matching, best-scored first: (index in a, index in b, mask IoU).

    Only instances of the same class with mask IoU >= ``min_iou`` are matched.
    """
    pairs, taken = [], set()
    for i in np.argsort(-a.scores, kind="stable"):
        best, best_iou = -1, min_iou
        for j in range(len(b)):
            if j in taken or b.labels[j] != a.labels[i]:
                continue
            iou = mask_iou(a.masks[i], b.masks[j], a.boxes[i], b.boxes[j])
            if iou >= best_iou:
                best, best_iou = j, iou
        if best >= 0:
            taken.add(best)
            pairs.append((int(i), best, float(best_iou)))
    return pairs


def mask_iou(m1: np.ndarray, m2: np.ndarray, box1=None, box2=None) -> float:
    """IoU of two bool masks [H, W], looking only inside their boxes' union when boxes are given."""
    if box1 is not None and box2 is not None:
        x1, y1 = int(min(box1[0], box2[0])), int(min(box1[1], box2[1]))
        x2, y2 = int(max(box1[2], box2[2])), int(max(box1[3], box2[3]))
        m1, m2 = m1[y1:y2, x1:x2], m2[y1:y2, x1:x2]
    union = np.logical_or(m1, m2).sum()
    return float(np.logical_and(m1, m2).sum() / union) if union else 1.0


def _compare_outputs(out_a: dict, out_b: dict, report: ParityReport) -> None:
    """Slot by slot, first batch entry only (the one real image of a padded static batch)."""
    out_a, out_b = ({k: v[:1] for k, v in out.items()} for out in (out_a, out_b))
    live = (out_a["scores"] > 0) | (out_b["scores"] > 0)  # empty slots hold nothing to compare
    for name in ("scores", "masks"):
        diff = np.abs(out_a[name].astype(np.float64) - out_b[name].astype(np.float64))
        worst = float(diff[live].max()) if live.any() else 0.0
        report.max_abs_error[name] = max(report.max_abs_error.get(name, 0.0), worst)
    both = (out_a["scores"] > 0) & (out_b["scores"] > 0)
    report.label_mismatches += int((out_a["labels"][both] != out_b["labels"][both]).sum())


def _fit_batch(batch: np.ndarray, static_batch: int | None) -> np.ndarray:
    """Repeat the first image to fill a static batch."""
    if static_batch is None or static_batch == batch.shape[0]:
        return batch
    return np.repeat(batch[:1], static_batch, axis=0)


def _numpy(outputs: dict) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v) for k, v in outputs.items()}
