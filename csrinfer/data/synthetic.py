"""A synthetic COCO-format instance dataset to train and evaluate on when no data can be had:
``csrinfer data synth --out DIR``.

Four shape classes (circle, rectangle, triangle, star: the classes of
``models/csr_d2s_r18_small.yaml``) of varied size, aspect, rotation and colour, drawn over
texture and photo backgrounds, overlapping one another: a shape drawn later hides what is
under it, and each annotation is the visible part only (an object hidden beyond
``MIN_VISIBLE`` of its area is not placed there). Masks are stored as compressed RLE.

Backgrounds are crops of the images scikit-image ships (brick, grass, gravel, photos...);
without scikit-image, procedural multi-scale noise takes their place. The output depends only
on the seed (and on whether scikit-image is installed) and is written atomically: into a
temporary folder renamed to ``DIR`` at the end.

Layout (what :func:`csrinfer.data.coco.find_split` reads)::

    DIR/annotations/instances_train.json, DIR/train/000000.png, ...
    DIR/annotations/instances_val.json,   DIR/val/000000.png, ...
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from csrinfer.atomic import temp_beside
from csrinfer.errors import DatasetError, os_error_sentence

CLASSES = ("circle", "rectangle", "triangle", "star")
MIN_VISIBLE = 0.45  # fraction of an object's area that must stay visible
SIZE_RANGE = (24, 120)  # sqrt(area) of a shape in pixels, drawn log-uniformly
IMAGE_SIDES = (192, 256)  # height and width of an image, each drawn uniformly
MAX_OBJECTS = 7
_SHIFT = 4  # sub-pixel bits for cv2 drawing
_GRAY_TEXTURES = ("brick", "grass", "gravel", "camera", "moon", "coins", "page", "text")
_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")


def write_synthetic(out_dir: str | os.PathLike, n_train: int = 1000, n_val: int | None = None, seed: int = 0,
                    progress: bool = False) -> Path:
    """Write the dataset to ``out_dir`` (which must not exist, or be empty). ``n_val`` defaults
    to a fifth of ``n_train`` (at least 1). Returns ``out_dir``."""
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DatasetError(f"{out_dir} already exists and is not empty; choose another --out or remove it")
    n_val = default_val_count(n_train) if n_val is None else n_val
    if n_train < 1 or n_val < 1:
        raise DatasetError(f"each split needs at least 1 image, got {n_train} train and {n_val} val")
    backgrounds = load_backgrounds()
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_beside(out_dir, folder=True)
    except OSError as e:
        raise DatasetError(f"cannot create {out_dir}: {os_error_sentence(e)}") from e
    try:
        for split_index, (split, count) in enumerate((("train", n_train), ("val", n_val))):
            _write_split(tmp, split, count, [seed, split_index], backgrounds, progress)
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked above
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def default_val_count(n_train: int) -> int:
    return max(1, round(n_train / 5))


def _write_split(root: Path, split: str, count: int, seed, backgrounds, progress: bool) -> None:
    from pycocotools import mask as mask_utils
    from tqdm import tqdm

    (root / split).mkdir(parents=True)
    images, annotations = [], []
    for i in tqdm(range(count), desc=f"synth {split}", disable=not progress, unit="img"):
        image, masks, labels = render_image(np.random.default_rng(seed + [i]), backgrounds)
        name = f"{i:06d}.png"
        cv2.imwrite(str(root / split / name), image)
        h, w = image.shape[:2]
        images.append({"id": i + 1, "file_name": name, "height": h, "width": w})
        for mask, label in zip(masks, labels):
            rle = mask_utils.encode(np.asfortranarray(mask))
            annotations.append({
                "id": len(annotations) + 1, "image_id": i + 1, "category_id": int(label) + 1, "iscrowd": 0,
                "segmentation": {"size": [h, w], "counts": rle["counts"].decode("ascii")},
                "area": float(mask_utils.area(rle)), "bbox": [float(v) for v in mask_utils.toBbox(rle)],
            })
    coco = {
        "info": {"description": "csrinfer synthetic shapes", "seed": int(seed[0]), "split": split},
        "images": images, "annotations": annotations,
        "categories": [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(CLASSES)],
    }
    (root / "annotations").mkdir(exist_ok=True)
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))


def render_image(rng: np.random.Generator, backgrounds: list[np.ndarray]):
    """One image: (uint8 BGR [H, W, 3], uint8 visible masks [N, H, W], labels [N])."""
    h, w = (int(rng.integers(IMAGE_SIDES[0], IMAGE_SIDES[1] + 1)) for _ in range(2))
    image = background(rng, backgrounds, h, w)
    full, visible, labels = [], [], []
    for _ in range(int(rng.integers(1, MAX_OBJECTS + 1))):
        for _attempt in range(10):
            label = int(rng.integers(len(CLASSES)))
            mask = draw_shape(rng, CLASSES[label], h, w)
            if mask.sum() < 0.25 * SIZE_RANGE[0] ** 2:  # mostly outside the image
                continue
            hidden = [v & ~mask.astype(bool) for v in visible]
            if all(v.sum() >= MIN_VISIBLE * f.sum() for v, f in zip(hidden, full)):
                break
        else:
            continue
        visible = hidden + [mask.astype(bool)]
        full.append(mask.astype(bool))
        labels.append(label)
        paint(rng, image, mask.astype(bool))
    image = cv2.GaussianBlur(image, (3, 3), rng.uniform(0.3, 0.8))
    noise = rng.normal(0.0, rng.uniform(2, 8), image.shape)
    image = np.clip(image + noise, 0, 255).astype(np.uint8)
    masks = np.stack(visible).astype(np.uint8) if visible else np.zeros((0, h, w), np.uint8)
    return image, masks, np.asarray(labels, np.int64)


def draw_shape(rng: np.random.Generator, name: str, h: int, w: int) -> np.ndarray:
    """uint8 {0, 1} [H, W] mask of one shape of random size, place, rotation and aspect."""
    size = math.exp(rng.uniform(math.log(SIZE_RANGE[0]), math.log(SIZE_RANGE[1])))
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    angle = rng.uniform(0, 2 * math.pi)
    mask = np.zeros((h, w), np.uint8)
    if name == "circle":
        r = size / math.sqrt(math.pi)
        cv2.circle(mask, _fixed((cx, cy)), int(r * (1 << _SHIFT)), 1, -1, cv2.LINE_8, _SHIFT)
        return mask
    if name == "rectangle":
        aspect = math.exp(rng.uniform(math.log(0.4), math.log(2.5)))
        a, b = size * math.sqrt(aspect) / 2, size / math.sqrt(aspect) / 2
        points = [(-a, -b), (a, -b), (a, b), (-a, b)]
    elif name == "triangle":
        # three vertices on a circle, at least 70 degrees apart, so no triangle is a sliver
        gaps = rng.dirichlet([4, 4, 4]) * (2 * math.pi - 3 * math.radians(70)) + math.radians(70)
        angles = np.cumsum(gaps)
        r = size / math.sqrt(1.3)
        points = [(r * math.cos(t), r * math.sin(t)) for t in angles]
    else:  # star
        spikes = int(rng.integers(5, 7))
        inner = rng.uniform(0.38, 0.55)
        r = size / math.sqrt(1.2)
        points = [((r if k % 2 == 0 else r * inner) * math.cos(math.pi * k / spikes),
                   (r if k % 2 == 0 else r * inner) * math.sin(math.pi * k / spikes)) for k in range(2 * spikes)]
    c, s = math.cos(angle), math.sin(angle)
    poly = np.asarray([_fixed((cx + x * c - y * s, cy + x * s + y * c)) for x, y in points], np.int32)
    cv2.fillPoly(mask, [poly], 1, cv2.LINE_8, _SHIFT)
    return mask


def paint(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray) -> None:
    """Fill ``mask`` in ``image`` with a random colour, flat or with a linear shading."""
    hsv = np.uint8([[[rng.integers(0, 180), rng.integers(60, 256), rng.integers(60, 256)]]])
    colour = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)
    ys, xs = np.nonzero(mask)
    shade = 1.0
    if rng.random() < 0.5:
        gx, gy = rng.normal(0, 0.004, 2)
        shade = np.clip(1.0 + gx * (xs - xs.mean()) + gy * (ys - ys.mean()), 0.5, 1.5)[:, None]
    image[ys, xs] = np.clip(colour * shade, 0, 255).astype(np.uint8)


def background(rng: np.random.Generator, backgrounds: list[np.ndarray], h: int, w: int) -> np.ndarray:
    """uint8 BGR [h, w, 3]: a random crop of a texture or photo, rescaled and tinted; or noise."""
    if not backgrounds or rng.random() < 0.15:
        return procedural_background(rng, h, w)
    src = backgrounds[int(rng.integers(len(backgrounds)))]
    scale = rng.uniform(0.5, 1.5)
    sh, sw = max(h, int(src.shape[0] * scale)), max(w, int(src.shape[1] * scale))
    src = cv2.resize(src, (sw, sh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    y, x = int(rng.integers(0, sh - h + 1)), int(rng.integers(0, sw - w + 1))
    crop = src[y:y + h, x:x + w].astype(np.float32)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    tint = rng.uniform(0.6, 1.3, 3).astype(np.float32)
    return np.clip(crop * tint + rng.uniform(-30, 30), 0, 255).astype(np.uint8)


def procedural_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth multi-scale colour noise."""
    out = np.zeros((h, w, 3), np.float32)
    for cells in (4, 16, 64):
        coarse = rng.uniform(0, 255, (max(2, h * cells // 256), max(2, w * cells // 256), 3)).astype(np.float32)
        out += cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC) / 3
    return np.clip(out, 0, 255).astype(np.uint8)


def load_backgrounds() -> list[np.ndarray]:
    """BGR images shipped with scikit-image (no download); empty without scikit-image."""
    try:
        import skimage.data as data
    except ImportError:
        return []
    images = []
    for name in _GRAY_TEXTURES + _PHOTOS:
        try:
            im = getattr(data, name)()
        except Exception:  # an image this scikit-image version would have to download
            continue
        im = np.asarray(im)
        if im.dtype != np.uint8:
            continue
        images.append(cv2.cvtColor(im, cv2.COLOR_GRAY2BGR) if im.ndim == 2 else np.ascontiguousarray(im[:, :, 2::-1]))
    return images


def _fixed(point) -> tuple[int, int]:
    return int(round(point[0] * (1 << _SHIFT))), int(round(point[1] * (1 << _SHIFT)))
