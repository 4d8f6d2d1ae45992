"""``Instances``: what every backend returns for one image (design.md §2)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from csrinfer.boxes import boxes_from_extents, masks_to_boxes  # noqa: F401  (part of this module's API)
from csrinfer.errors import ConfigError


@dataclass
class Instances:
    """Final instances of one image, at the image's original size.

    Attributes:
        masks: bool [N, H, W].
        labels: int64 [N], indices into ``class_names``.
        scores: float32 [N], descending.
        boxes: float32 [N, 4], (x1, y1, x2, y2) in pixels, the masks' tight boxes.
        class_names: names of all classes of the model (not only the detected ones).
        category_ids: the dataset category id of each class, which ``to_coco`` writes (None:
            label + 1).
    """

    masks: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray
    class_names: Sequence[str] = field(default_factory=tuple)
    category_ids: Sequence[int] | None = None

    @classmethod
    def empty(cls, height: int, width: int, class_names: Sequence[str] = (),
              category_ids: Sequence[int] | None = None) -> "Instances":
        return cls(np.zeros((0, height, width), bool), np.zeros(0, np.int64), np.zeros(0, np.float32),
                   np.zeros((0, 4), np.float32), tuple(class_names), category_ids)

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the image the masks belong to."""
        return int(self.masks.shape[1]), int(self.masks.shape[2])

    @property
    def names(self) -> list[str]:
        """The class name of each instance."""
        return [self.class_names[i] if 0 <= i < len(self.class_names) else str(i) for i in self.labels.tolist()]

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def __getitem__(self, index) -> "Instances":
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Instances(self.masks[index], self.labels[index], self.scores[index], self.boxes[index],
                         self.class_names, self.category_ids)

    def rle(self) -> list[dict]:
        """Each mask as a COCO RLE (pycocotools' compressed form: ``{"size": [H, W], "counts": bytes}``)."""
        from pycocotools import mask as mask_utils

        if len(self) == 0:
            return []
        return mask_utils.encode(np.asfortranarray(self.masks.transpose(1, 2, 0).astype(np.uint8)))

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
