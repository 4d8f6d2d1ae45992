"""Boxes of bool masks, shared by training (object crops) and the runtime (``Instances.boxes``)."""

from __future__ import annotations

import numpy as np


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """Tight (x1, y1, x2, y2) boxes of bool masks [N, H, W]; an empty mask gives zeros.

    x2/y2 are exclusive pixel edges, so a one-pixel mask at (x, y) is (x, y, x+1, y+1).
    """
    return boxes_from_extents(masks.any(axis=2), masks.any(axis=1))


def boxes_from_extents(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Boxes as :func:`masks_to_boxes` from which rows (bool [N, H]) and columns (bool [N, W])
    each mask touches."""
    n, h = rows.shape
    w = cols.shape[1]
    boxes = np.zeros((n, 4), np.float32)
    if n == 0:
        return boxes
    has = rows.any(axis=1)
    y1 = rows.argmax(axis=1)
    y2 = h - rows[:, ::-1].argmax(axis=1)
    x1 = cols.argmax(axis=1)
    x2 = w - cols[:, ::-1].argmax(axis=1)
    boxes[has] = np.stack([x1, y1, x2, y2], axis=1)[has].astype(np.float32)
    return boxes
