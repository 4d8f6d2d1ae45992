"""``Instances``: what every backend returns for one image (design.md §2).

Labels, scores and boxes are small and computed at once. The masks stay in the form the
network made them (:mod:`csrinfer.runtime.masks`) until read: all of them (``masks``, kept
once read), one (``mask(i)``), or the cheaper forms that never hold N full-size images:
``crops()``, ``rle()``, ``polygons()``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from csrinfer.boxes import boxes_from_extents, masks_to_boxes  # noqa: F401  (part of this module's API)
from csrinfer.errors import ConfigError
from csrinfer.runtime.masks import DenseMasks, Masks


class Instances:
    """Final instances of one image, at the image's original size.

    Args:
        masks: bool [N, H, W], or a :class:`csrinfer.runtime.masks.Masks` storage (what
            ``Segmenter`` gives: mask probabilities at the feature stride, pasted when read).
        labels: int64 [N], indices into ``class_names``.
        scores: float32 [N], descending.
        boxes: float32 [N, 4], (x1, y1, x2, y2) in pixels, the masks' tight boxes (x2, y2 exclusive).
        class_names: names of all classes of the model (not only the detected ones).
        category_ids: the dataset category id of each class, which ``to_coco`` writes (None:
            label + 1).

    Example:
        >>> inst = Segmenter("model.onnx").predict("street.jpg")
        >>> inst.boxes, inst.scores, inst.names      # no mask pasted yet
        >>> inst.rle()                               # COCO RLE, no full-size image made
        >>> inst.crops()[0]                          # the first mask inside its box
        >>> inst.masks                               # bool [N, H, W], made now
    """

    def __init__(self, masks, labels, scores, boxes, class_names: Sequence[str] = (),
                 category_ids: Sequence[int] | None = None):
        self.mask_store: Masks = masks if isinstance(masks, Masks) else DenseMasks(masks)
        self.labels = np.asarray(labels)
        self.scores = np.asarray(scores)
        self.boxes = np.asarray(boxes)
        self.class_names = tuple(class_names)
        self.category_ids = category_ids
        self._masks = self.mask_store.full() if isinstance(self.mask_store, DenseMasks) else None
        self._rle = None

    @classmethod
    def empty(cls, height: int, width: int, class_names: Sequence[str] = (),
              category_ids: Sequence[int] | None = None) -> "Instances":
        return cls(np.zeros((0, height, width), bool), np.zeros(0, np.int64), np.zeros(0, np.float32),
                   np.zeros((0, 4), np.float32), tuple(class_names), category_ids)

    @property
    def masks(self) -> np.ndarray:
        """bool [N, H, W], every mask at the image's size (made on first read, then kept)."""
        if self._masks is None:
            self._masks = self.mask_store.full()
        return self._masks

    def mask(self, i: int) -> np.ndarray:
        """bool [H, W], mask ``i`` alone (the others are not made)."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"mask {i} of {len(self)} instances")
        i = i % len(self)
        return self._masks[i] if self._masks is not None else self.mask_store.mask(i)

    def crops(self) -> list[np.ndarray]:
        """Each mask cut to its box: bool [y2 - y1, x2 - x1] per instance (detectron2's and
        mmdeploy's form); ``full[y1:y2, x1:x2] = crop`` gives the full mask back."""
        if self._masks is not None:
            return DenseMasks(self._masks).crops(self.boxes)
        return self.mask_store.crops(self.boxes)

    def rle(self) -> list[dict]:
        """Each mask as a COCO RLE, byte for byte ``pycocotools.mask.encode``'s compressed form
        (``{"size": [H, W], "counts": bytes}``), computed where the masks are."""
        if self._rle is None:
            store = DenseMasks(self._masks) if self._masks is not None else self.mask_store
            self._rle = store.rle(self.boxes) if len(self) else []
        return self._rle

    def polygons(self) -> list[list[np.ndarray]]:
        """Each mask's outer contours, int32 [K, 2] (x, y) arrays (as Ultralytics' ``masks.xy``)."""
        return self.mask_store.polygons(self.boxes)

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the image the masks belong to."""
        return tuple(int(v) for v in self.mask_store.image_size)

    @property
    def names(self) -> list[str]:
        """The class name of each instance."""
        return [self.class_names[i] if 0 <= i < len(self.class_names) else str(i) for i in self.labels.tolist()]

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def __getitem__(self, index) -> "Instances":
        if isinstance(index, (int, np.integer)):
            if not -len(self) <= index < len(self):
                raise IndexError(f"instance {index} of {len(self)}")
            index = [int(index) % len(self)]
        masks = self._masks[index] if self._masks is not None else self.mask_store.select(index)
        return Instances(masks, self.labels[index], self.scores[index], self.boxes[index],
                         self.class_names, self.category_ids)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def to_coco(self, image_id: int, category_ids: Sequence[int] | None = None) -> list[dict]:
        """COCO results entries (segm, RLE with ``counts`` as str, bbox as x, y, w, h).

        ``category_ids`` maps label i to a dataset category id (default: the model's own,
        ``self.category_ids``, which training takes from its dataset; else i + 1).
        """
        if category_ids is None:
            category_ids = self.category_ids
        # Checked even without instances: an image with a high label would fail only sometimes.
        if category_ids is not None and len(category_ids) < len(self.class_names):
            raise ConfigError(f"category_ids has {len(category_ids)} ids for {len(self.class_names)} classes; "
                              "give one dataset category id per class")
        out = []
        for i, rle in enumerate(self.rle()):
            label = int(self.labels[i])
            x1, y1, x2, y2 = (float(v) for v in self.boxes[i])
            out.append({
                "image_id": int(image_id),
                "category_id": int(category_ids[label]) if category_ids is not None else label + 1,
                "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")},
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": float(self.scores[i]),
            })
        return out

    def numpy(self) -> dict[str, np.ndarray]:
        """The arrays as a dict: masks, labels, scores, boxes."""
        return {"masks": self.masks, "labels": self.labels, "scores": self.scores, "boxes": self.boxes}

    def __repr__(self) -> str:
        h, w = self.image_size
        return f"Instances(n={len(self)}, image={h}x{w}, names={self.names[:5]}{'...' if len(self) > 5 else ''})"
