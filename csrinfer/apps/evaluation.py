"""Mask AP the way the paper reports it (Tables I-III): pycocotools COCOeval on segmentations,
AP, AP50, AP75, APs, APm, APl, plus the speed of the model that produced the results.

- :func:`coco_metrics`: a COCO results list against a ground-truth file -> the six numbers;
- :func:`predict_split`: run a model over every image of a split -> results entries + timing;
- :func:`evaluate_checkpoint`: both, for ``csrinfer eval``.

The model runs through :class:`csrinfer.Segmenter`, the inference path every backend shares, so
a checkpoint, its ONNX export and its TensorRT engine are evaluated the same way.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from csrinfer import atomic
from csrinfer.errors import ConfigError, DatasetError, first_line

log = logging.getLogger(__name__)

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def coco_metrics(coco_gt, results: Sequence[dict], image_ids: Sequence[int] | None = None,
                 iou_type: str = "segm") -> dict[str, float | None]:
    """COCOeval of ``results`` (COCO results entries) against ``coco_gt`` (a pycocotools COCO or
    the path of an instances JSON). Values are fractions in [0, 1]; None where the ground truth
    has no object of that size. ``image_ids``: evaluate these images only (default: all).
    Ground-truth annotations pycocotools cannot rasterize are left out, with a warning
    (:func:`csrinfer.data.coco.scorable_ground_truth`)."""
    from pycocotools.cocoeval import COCOeval

    from csrinfer.data.coco import load_coco, scorable_ground_truth

    if isinstance(coco_gt, (str, os.PathLike)):
        coco_gt = load_coco(coco_gt)
    coco_gt = scorable_ground_truth(coco_gt)
    ids = sorted(coco_gt.getImgIds()) if image_ids is None else sorted(int(i) for i in image_ids)
    has_objects = any(not a.get("iscrowd", 0) for a in coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=ids)))
    if not results:
        return {k: (0.0 if has_objects else None) for k in METRICS}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its own tables
        coco_dt = coco_gt.loadRes([dict(r) for r in results])  # loadRes adds keys to each entry
        evaluator = COCOeval(coco_gt, coco_dt, iou_type)
        evaluator.params.imgIds = ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {k: (float(v) if v >= 0 else None) for k, v in zip(METRICS, evaluator.stats[:6])}


def format_table(metrics: dict) -> str:
    """The paper's table: one header line, one line of values (AP in percent, like the paper)."""
    def cell(v):
        return "-" if v is None else f"{100 * v:.1f}"

    header = " ".join(f"{k:>6}" for k in METRICS)
    values = " ".join(f"{cell(metrics.get(k)):>6}" for k in METRICS)
    return f"{header}\n{values}"


def predict_split(predict: Callable, coco_gt, image_dir: str | os.PathLike, category_ids: Sequence[int],
                  progress: bool = True, max_images: int | None = None):
    """Run ``predict`` (uint8 BGR image -> Instances) on every image of ``coco_gt``.

    Yields (image_id, its COCO results entries, seconds spent in ``predict``) image by image,
    so that a caller interrupted half-way still holds what was done. Images that cannot be
    read are reported with their path and left out.
    """
    from tqdm import tqdm

    from csrinfer.errors import ImageError
    from csrinfer.image_io import read_image

    image_ids = sorted(coco_gt.getImgIds())[:max_images]
    for image_id in tqdm(image_ids, desc="evaluating", unit="img", disable=not progress, dynamic_ncols=True):
        try:
            image = read_image(Path(image_dir) / coco_gt.imgs[image_id]["file_name"])
        except ImageError as e:
            log.warning("%s; left out of the evaluation", e)
            continue
        start = time.perf_counter()
        instances = predict(image)  # Instances hold numpy arrays: the device has finished
        seconds = time.perf_counter() - start
        yield image_id, instances.to_coco(image_id, category_ids), seconds


def evaluate_checkpoint(model: str | os.PathLike, data_dir: str | os.PathLike, split: str = "val",
                        out: str | os.PathLike | None = None, device: str | None = None, progress: bool = True,
                        max_images: int | None = None) -> dict:
    """Evaluate a model file (``.pth`` checkpoint, ``.onnx``, TensorRT ``.plan``) or a ready
    ``Segmenter`` (its options kept; give ``out``) on a split of a COCO-format folder.

    Returns ``{AP, AP50, AP75, APs, APm, APl, fps, images, seconds, device, results}`` where
    ``results`` is the path of the COCO results JSON (RLE masks) written to ``out`` (default:
    ``results_<split>.json`` beside the model). ``fps`` counts pre-processing, network,
    in-graph and mask post-processing at batch 1, not the decoding of the image files.
    The results are written before they are scored: if scoring fails, the DatasetError says
    where they are; on Ctrl-C those of the images done so far are written, unscored.
    """
    from csrinfer.data.coco import categories, find_split, load_coco
    from csrinfer.runtime.segmenter import Segmenter

    if max_images is not None and (not isinstance(max_images, int) or max_images < 1):
        raise ConfigError(f"max_images must be a whole number of at least 1, got {max_images!r}")
    if isinstance(model, Segmenter) and out is None:
        raise ConfigError("evaluating a Segmenter needs out=, the path of the results JSON to write")
    out = Path(out) if out is not None else Path(model).with_name(f"results_{split}.json")
    if out.is_dir():  # found now, not after every image has been predicted
        raise ConfigError(f"out={out} is a folder; give the path of a .json file")
    segmenter = model if isinstance(model, Segmenter) else Segmenter(model, device)
    ann_file, image_dir = find_split(data_dir, split)
    coco_gt = load_coco(ann_file)
    category_ids, names = categories(coco_gt)
    if len(names) != len(segmenter.class_names):
        raise DatasetError(f"{ann_file} has {len(names)} categories but the model {model} has "
                           f"{len(segmenter.class_names)} classes")
    if list(names) != list(segmenter.class_names):
        log.warning("the dataset's category names differ from the model's; labels are matched by position")
    results, done, seconds = [], [], 0.0
    write = lambda: atomic.write_json(out, results, indent=None)  # noqa: E731
    try:
        for image_id, entries, spent in predict_split(segmenter.predict, coco_gt, image_dir, category_ids,
                                                      progress, max_images):
            results += entries
            done.append(image_id)
            seconds += spent
    except KeyboardInterrupt:
        if done:  # finished work is kept, as training keeps last.pth
            write()
            print(f"interrupted: the predictions for the first {len(done)} images are in {out} (not scored)",
                  file=sys.stderr)
        raise
    write()
    metrics = _score(coco_gt, results, done, ann_file, out)
    return dict(metrics, fps=len(done) / seconds if seconds else None, images=len(done), seconds=seconds,
                device=segmenter.device, results=str(out))


def _score(coco_gt, results, image_ids, ann_file, out) -> dict:
    try:
        return coco_metrics(coco_gt, results, image_ids)
    except Exception as e:  # pycocotools raises assorted types; the user needs where the predictions are
        raise DatasetError(f"scoring the {len(results)} predictions against {ann_file} failed "
                           f"({type(e).__name__}: {first_line(e)}); they are kept in {out}") from e
