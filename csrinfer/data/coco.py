"""COCO-format instance dataset (paper §IV trains and evaluates on MS-COCO) on pycocotools.

Reads any COCO-format instance file: polygon and RLE (compressed or not) masks; ``iscrowd``
regions become an ignore map that the losses leave out; images without annotations are kept
(they teach the network what background looks like). Class labels are 0..C-1 in category-id
order. A file without COCO's structure (a missing key, a value of the wrong type) is refused
when it is read, with one sentence naming the entry (:mod:`csrinfer.data.coco_schema`); data
that is well-formed but broken never stops an epoch:

- degenerate annotations (polygons of fewer than 3 points, zero area, boxes entirely outside
  the image, unknown categories, RLEs that do not fit their image, coordinates that are not
  finite) are skipped and counted in ``stats``;
- an image file that is missing is reported once, with its path, when the dataset is opened,
  and left out; one that cannot be decoded is reported, with its path, when it is read, and
  the next readable image takes its place (as mmdetection does), so every batch stays full
  and every process of a distributed run takes the same number of steps.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from csrinfer.data.coco_schema import check_structure
from csrinfer.errors import DatasetError, ImageError, os_error_sentence
from csrinfer.image_io import read_image
from csrinfer.letterbox import Letterbox, stack_batch

log = logging.getLogger(__name__)

SKIP_REASONS = ("few_points", "zero_area", "outside_image", "unknown_category", "bad_segmentation")
# A polygon coordinate beyond this many image sizes is garbage, and pycocotools' rasterizer walks
# every pixel of an edge (a segfault near 1e8): such a part is dropped, not rasterized.
FAR_OUTSIDE = 8


@dataclass
class Sample:
    """One transformed training sample.

    image: float32 RGB [3, H, W], 0-255, padded to a multiple of 32.
    masks: uint8 {0, 1} [N, h, w] at the resized (unpadded) size.
    labels: int64 [N], 0..C-1.
    ignore: bool [h, w] (crowd regions) or None.
    """

    image: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    ignore: np.ndarray | None
    image_id: int
    box: Letterbox


@dataclass
class Batch:
    """Samples stacked to one padded size.

    images: float32 [B, 3, H, W]; masks: list of uint8 [Ni, H, W] (padded with 0);
    labels: list of int64 [Ni]; ignores: list of bool [H, W] (all False without crowds).
    ``targets`` is filled in by the training collate (:mod:`csrinfer.train.targets`).
    """

    images: torch.Tensor
    masks: list[torch.Tensor]
    labels: list[torch.Tensor]
    ignores: list[torch.Tensor]
    image_ids: list[int]
    targets: object = None

    def __len__(self) -> int:
        return int(self.images.shape[0])


def find_split(data_dir: str | os.PathLike, split: str) -> tuple[Path, Path]:
    """(annotation file, image folder) of a split in a COCO-style folder.

    Accepts the layout ``csrinfer data synth`` writes (``annotations/instances_train.json`` +
    ``train/``) and MS-COCO's (``annotations/instances_train2017.json`` + ``train2017/``).
    """
    root = Path(data_dir)
    if root.is_file():
        raise DatasetError(f"{root} is a file; give the dataset folder, the one holding "
                           f"annotations/instances_{split}.json and {split}/")
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist")
    for suffix in ("", "2017", "2014"):
        ann = root / "annotations" / f"instances_{split}{suffix}.json"
        images = root / f"{split}{suffix}"
        if ann.is_file():
            if not images.is_dir():
                raise DatasetError(f"{ann} exists but its image folder {images} does not")
            return ann, images
    raise DatasetError(f"no '{split}' split in {root}: expected annotations/instances_{split}.json "
                       f"(or instances_{split}2017.json) and an image folder {split}/ (or {split}2017/)")


def load_coco(ann_file: str | os.PathLike):
    """pycocotools ``COCO`` index of a file whose structure has been checked
    (:func:`csrinfer.data.coco_schema.check_structure`): a file that cannot be read, is not JSON
    or lacks what COCO requires is one DatasetError sentence naming the file and the entry.

    An annotation without ``area`` gets the area of its geometry, as detectron2 computes it when
    it writes COCO JSON (polygons: their surface; RLE: its pixel count), since COCOeval sorts
    objects into small/medium/large by it; one without ``iscrowd`` is not a crowd.
    """
    from pycocotools.coco import COCO

    ann_file = Path(ann_file)
    if not ann_file.is_file():
        raise DatasetError(f"annotation file {ann_file} does not exist")
    data = _read_json(ann_file)
    check_structure(data, ann_file)
    for ann in data["annotations"]:
        ann.setdefault("iscrowd", 0)
        if "area" not in ann:
            ann["area"] = segmentation_area(ann["segmentation"])
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco


def _read_json(ann_file: Path):
    try:
        with open(ann_file, "rb") as f:
            return json.load(f)
    except OSError as e:
        raise DatasetError(f"annotation file {ann_file} cannot be read ({os_error_sentence(e)})") from None
    except ValueError as e:  # JSONDecodeError, and UnicodeDecodeError for bytes that are not text
        raise DatasetError(f"annotation file {ann_file} is not valid COCO JSON ({type(e).__name__}: {e})") from None


def categories(coco) -> tuple[list[int], list[str]]:
    """(category ids, names) in id order: label i is category ``ids[i]``."""
    cats = sorted(coco.dataset["categories"], key=lambda c: c["id"])
    return [int(c["id"]) for c in cats], [str(c["name"]) for c in cats]


def usable_segmentation(seg, height: int, width: int):
    """A segmentation pycocotools can rasterize at (height, width): (segmentation, None), or
    (None, "few_points" | "bad_segmentation").

    Polygons lose their parts of fewer than 3 points and those with coordinates that are not
    finite or lie far outside the image (pycocotools' rasterizer crashes the process on those);
    an RLE must be of the image's size and its runs must cover the image exactly (pycocotools
    decodes others into memory it does not own). RLEs come back compressed.
    """
    if isinstance(seg, list):
        return _usable_polygons(seg, height, width)
    if isinstance(seg, dict) and "counts" in seg and "size" in seg:
        runs = _rle_runs(seg["counts"])
        if (list(seg["size"]) != [height, width] or runs is None or min(runs, default=0) < 0
                or sum(runs) != height * width):
            return None, "bad_segmentation"
        return _as_rle(seg, height, width), None
    return None, "bad_segmentation"


def _usable_polygons(seg: list, height: int, width: int):
    try:
        parts = [np.asarray(p, np.float64) for p in seg]
    except (TypeError, ValueError):
        return None, "bad_segmentation"
    shaped = [p for p in parts if p.ndim == 1 and p.size >= 6 and p.size % 2 == 0]
    limit = FAR_OUTSIDE * max(height, width)
    good = [p for p in shaped if (np.abs(p) <= limit).all()]  # NaN compares False: dropped too
    if good:
        return [p.tolist() for p in good], None
    return None, ("bad_segmentation" if shaped else "few_points")


def clean_segmentation(seg, height: int, width: int):
    """Validate one annotation's segmentation for training. Returns (segmentation, None) or
    (None, reason), a reason of ``SKIP_REASONS``.

    Besides :func:`usable_segmentation`, an instance must cover some of the image: the box is
    taken from the geometry itself (not the annotation's ``bbox``, which may be missing or stale).
    """
    from pycocotools import mask as mask_utils

    cleaned, reason = usable_segmentation(seg, height, width)
    if reason is not None:
        return None, reason
    if isinstance(cleaned, list):
        xy = np.concatenate([np.reshape(p, (-1, 2)) for p in cleaned])
        area = segmentation_area(cleaned)
        (x1, y1), (x2, y2) = xy.min(axis=0), xy.max(axis=0)
    else:
        area = float(mask_utils.area(cleaned))
        x1, y1, w, h = mask_utils.toBbox(cleaned).tolist()
        x2, y2 = x1 + w, y1 + h
    if area <= 0 or x2 <= x1 or y2 <= y1:
        return None, "zero_area"
    if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
        return None, "outside_image"
    return cleaned, None


def segmentation_area(seg) -> float:
    """Area of a well-formed segmentation: the surface of its polygons of at least 3 finite
    points, or the pixel count of an RLE (0 when its counts cannot be decoded)."""
    if isinstance(seg, list):
        parts = [np.asarray(p, np.float64) for p in seg if len(p) >= 6 and len(p) % 2 == 0]
        return float(sum(abs(_shoelace(p.reshape(-1, 2))) for p in parts if np.isfinite(p).all()))
    runs = _rle_runs(seg["counts"])
    return float(sum(runs[1::2])) if runs else 0.0


def _shoelace(xy: np.ndarray) -> float:
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _rle_runs(counts) -> list[int] | None:
    """Run lengths of an RLE: its list, or its compressed string decoded as pycocotools'
    ``rleFrString`` does (5 bits a character, each run after the second relative to the run two
    before); None when the string is not ASCII or ends inside a number."""
    if isinstance(counts, list):
        return counts
    if isinstance(counts, str) and not counts.isascii():
        return None
    data = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
    runs, p = [], 0
    while p < len(data):
        x, k, more = 0, 0, True
        while more:
            if p == len(data):
                return None
            c = data[p] - 48
            x |= (c & 0x1F) << 5 * k
            more = c & 0x20
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << 5 * k
        runs.append(x + runs[-2] if len(runs) > 2 else x)
    return runs


def _as_rle(seg: dict, height: int, width: int) -> dict:
    from pycocotools import mask as mask_utils

    if isinstance(seg["counts"], list):  # uncompressed RLE
        return mask_utils.frPyObjects(seg, height, width)
    counts = seg["counts"].encode("ascii") if isinstance(seg["counts"], str) else seg["counts"]
    return {"size": [height, width], "counts": counts}


def scorable_ground_truth(coco):
    """A copy of ``coco`` that COCOeval scores without crashing and as written: each annotation
    of a listed image and category gets its :func:`usable_segmentation`, and those without one
    are left out with one warning (the evaluation counts the rest as COCO does, degenerate or
    not). Annotations are renumbered 1..N: COCOeval looks them up by id, so a repeated id would
    score one annotation twice and the other never, and it takes id 0 for "unmatched"."""
    from pycocotools.coco import COCO

    kept, dropped, reasons = [], [], Counter()
    for ann in coco.dataset["annotations"]:
        info = coco.imgs.get(ann["image_id"])
        if info is None or ann["category_id"] not in coco.cats:  # COCOeval never reads these
            kept.append(ann)
            continue
        seg, reason = usable_segmentation(ann["segmentation"], info["height"], info["width"])
        if reason is None:
            kept.append({**ann, "segmentation": seg})
        else:
            dropped.append(ann["id"])
            reasons[reason] += 1
    if dropped:
        log.warning("%d annotation(s) of the ground truth cannot be rasterized and are left out of the "
                    "evaluation (%s), e.g. annotation ids %s", len(dropped), dict(reasons),
                    ", ".join(map(str, dropped[:3])))
    scorable = COCO()
    scorable.dataset = {**coco.dataset, "annotations": [{**ann, "id": i} for i, ann in enumerate(kept, 1)]}
    with contextlib.redirect_stdout(io.StringIO()):
        scorable.createIndex()
    return scorable


def rasterize(seg, height: int, width: int) -> np.ndarray:
    """uint8 {0, 1} [H, W] mask of a cleaned segmentation (polygon list or RLE)."""
    from pycocotools import mask as mask_utils

    if isinstance(seg, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    else:
        rle = seg
    return mask_utils.decode(rle).astype(np.uint8)


class CocoInstanceDataset(torch.utils.data.Dataset):
    """Instances of a COCO-format annotation file.

    Args:
        ann_file: the instances JSON.
        image_dir: folder the images' ``file_name`` are relative to.
        transform: ``TrainTransform``-like callable ``(image, masks, ignore, rng)``; it is given a
            generator seeded by (seed, epoch, index), so a sample's augmentation depends only on
            those three numbers (an interrupted run resumes with the very same batches).
        seed: see ``transform``.

    Attributes:
        class_names, category_ids: label i is category ``category_ids[i]`` named ``class_names[i]``.
        stats: what was read and what was skipped: ``images`` (kept), ``images_missing``,
            ``instances``, ``crowd`` and ``skipped`` (annotations, counted per reason of
            ``SKIP_REASONS``).
    """

    def __init__(self, ann_file: str | os.PathLike, image_dir: str | os.PathLike, transform=None, seed: int = 0):
        self.ann_file, self.image_dir = Path(ann_file), Path(image_dir)
        self.coco = load_coco(ann_file)
        self.category_ids, self.class_names = categories(self.coco)
        self.transform = transform
        self.seed, self.epoch = seed, 0
        label_of = {cid: i for i, cid in enumerate(self.category_ids)}
        skipped = Counter({r: 0 for r in SKIP_REASONS})
        self.records, missing, crowd = [], [], 0
        self.unusable: set[int] = set()  # found unreadable once: not read (nor reported) again
        for image_id in sorted(self.coco.imgs):
            info = self.coco.imgs[image_id]
            path = self.image_dir / info["file_name"]
            if not path.is_file():
                missing.append(path)
                continue
            h, w = info["height"], info["width"]
            instances, crowds = [], []
            for ann in self.coco.imgToAnns.get(image_id, []):
                if ann.get("category_id") not in label_of:
                    skipped["unknown_category"] += 1
                    continue
                seg, reason = clean_segmentation(ann.get("segmentation"), h, w)
                if reason is not None:
                    skipped[reason] += 1
                elif ann.get("iscrowd", 0):
                    crowds.append(seg)
                else:
                    instances.append((seg, label_of[ann["category_id"]]))
            crowd += len(crowds)
            self.records.append(dict(id=int(image_id), path=path, height=h, width=w,
                                     instances=instances, crowds=crowds))
        self.stats = dict(images=len(self.records), images_missing=len(missing),
                          instances=sum(len(r["instances"]) for r in self.records),
                          crowd=crowd, skipped=dict(skipped))
        if missing:
            log.warning("%d image(s) listed in %s are missing and are skipped, e.g. %s",
                        len(missing), self.ann_file, ", ".join(str(p) for p in missing[:3]))

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Seeds the augmentation of the next epoch (call before creating the loader's iterator)."""
        self.epoch = int(epoch)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None] | None:
        """Untransformed (uint8 BGR image [H, W, 3], uint8 masks [N, H, W], int64 labels [N],
        bool ignore [H, W] or None); None when the image cannot be used (a warning the first time
        this copy of the dataset meets it: data-loader workers, made anew each epoch, have their
        own copies, so it is reported at most once per worker and epoch)."""
        if index in self.unusable:
            return None
        rec = self.records[index]
        try:
            image = read_image(rec["path"])
        except ImageError as e:
            return self._skip(index, f"{e}; skipped")
        h, w = image.shape[:2]
        if (rec["height"], rec["width"]) != (h, w):
            return self._skip(index, f"image {rec['path']} is {h}x{w} but its annotation says "
                                     f"{rec['height']}x{rec['width']}; skipped")
        masks = np.zeros((len(rec["instances"]), h, w), np.uint8)
        for i, (seg, _) in enumerate(rec["instances"]):
            masks[i] = rasterize(seg, h, w)
        labels = np.asarray([label for _, label in rec["instances"]], np.int64)
        ignore = None
        if rec["crowds"]:
            ignore = np.zeros((h, w), bool)
            for seg in rec["crowds"]:
                ignore |= rasterize(seg, h, w).astype(bool)
        return image, masks, labels, ignore

    def _skip(self, index: int, reason: str) -> None:
        self.unusable.add(index)
        log.warning("%s", reason)
        return None

    def __getitem__(self, index: int) -> Sample:
        for attempt in range(len(self)):
            loaded = self.load((index + attempt) % len(self))
            if loaded is not None:
                return self._transform((index + attempt) % len(self), *loaded)
        raise DatasetError(f"none of the {len(self)} images of {self.ann_file} can be read")

    def _transform(self, index: int, image, masks, labels, ignore) -> Sample:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.transform is not None:
            image, masks, ignore, box = self.transform(image, masks, ignore, rng)
        else:
            h, w = image.shape[:2]
            box = Letterbox((h, w), (h, w), (h, w))
            image = np.ascontiguousarray(image[:, :, ::-1].transpose(2, 0, 1), dtype=np.float32)
        # An instance that shrank to nothing (a sliver at a small scale) has no pixel to learn.
        keep = masks.any(axis=(1, 2))
        return Sample(image, masks[keep], labels[keep], ignore, self.records[index]["id"], box)


def collate(samples: list[Sample], divisor: int = 32) -> Batch:
    """Stack samples to one padded size (:func:`csrinfer.letterbox.stack_batch`)."""
    images = torch.from_numpy(stack_batch([s.image for s in samples], divisor))
    hp, wp = images.shape[-2:]
    masks, ignores = [], []
    for s in samples:
        h, w = s.box.resized
        m = torch.zeros((len(s.masks), hp, wp), dtype=torch.uint8)
        m[:, :h, :w] = torch.from_numpy(np.ascontiguousarray(s.masks))
        masks.append(m)
        ig = torch.zeros((hp, wp), dtype=torch.bool)
        if s.ignore is not None:
            ig[: s.ignore.shape[0], : s.ignore.shape[1]] = torch.from_numpy(np.ascontiguousarray(s.ignore))
        ignores.append(ig)
    return Batch(images, masks, [torch.from_numpy(s.labels) for s in samples], ignores,
                 [s.image_id for s in samples])
