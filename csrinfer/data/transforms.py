"""Training-time transforms (paper §IV, mmdetection's 1x pipeline): random horizontal flip,
resize of the short side (one size, or a range for multi-scale training), pad to a multiple of 32.

The image goes through the shared ``letterbox`` of :mod:`csrinfer.letterbox`, the very
function every backend uses at inference, so training and deployment see the same pixels.
Masks follow the image exactly: same flip, same target size, same interpolation rule.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from csrinfer.letterbox import Letterbox, letterbox

# cv2.resize's area interpolation takes at most 4 channels at once (at non-integer scales).
_CV2_MAX_CHANNELS = 4


def resize_masks(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8/bool masks [N, H, W] -> uint8 {0, 1} [N, h, w] at ``size`` = (h, w).

    The interpolation is the one ``letterbox`` uses for the image (area when shrinking, linear
    when enlarging), both pixel-centre aligned; masks are resized as 0/255 and thresholded at the
    middle, so a mask edge lands where the image's edge lands. (OpenCV's nearest-neighbour is
    not centre-aligned and would shift masks by up to half a pixel.)
    """
    n, h, w = masks.shape
    if (h, w) == tuple(size):
        return masks.astype(np.uint8, copy=False)
    interp = cv2.INTER_AREA if size[0] < h else cv2.INTER_LINEAR
    out = np.empty((n, size[0], size[1]), np.uint8)
    for start in range(0, n, _CV2_MAX_CHANNELS):
        chunk = masks[start:start + _CV2_MAX_CHANNELS].astype(np.uint8).transpose(1, 2, 0) * 255
        resized = cv2.resize(np.ascontiguousarray(chunk), (size[1], size[0]), interpolation=interp)
        out[start:start + chunk.shape[2]] = (resized.reshape(size[0], size[1], -1) >= 128).transpose(2, 0, 1)
    return out


class TrainTransform:
    """Flip, resize and pad one training sample.

    Args:
        short_side_range: (min, max) short side; each sample draws one uniformly (mmdetection's
            multi-scale "value" mode). (s, s) is single-scale.
        max_size: longest side after resizing.
        flip_prob: probability of a horizontal flip.
        divisor: the padded sides are multiples of this.
    """

    def __init__(self, short_side_range: Sequence[int] = (800, 800), max_size: int = 1333,
                 flip_prob: float = 0.5, divisor: int = 32):
        lo, hi = (int(v) for v in short_side_range)
        if not 0 < lo <= hi:
            raise ValueError(f"short_side_range must be (min, max) with 0 < min <= max, got {short_side_range}")
        self.short_side_range = (lo, hi)
        self.max_size = max_size
        self.flip_prob = flip_prob
        self.divisor = divisor

    def __call__(self, image_bgr: np.ndarray, masks: np.ndarray, ignore: np.ndarray | None,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, Letterbox]:
        """uint8 BGR [H, W, 3], uint8 masks [N, H, W], bool ignore [H, W] or None ->
        (float32 RGB [3, H', W'] padded, uint8 masks [N, h, w], bool ignore [h, w] or None, Letterbox),
        where (h, w) is the resized (unpadded) size.
        """
        short_side = int(rng.integers(self.short_side_range[0], self.short_side_range[1] + 1))
        if rng.random() < self.flip_prob:
            image_bgr = image_bgr[:, ::-1]
            masks = masks[:, :, ::-1]
            ignore = None if ignore is None else ignore[:, ::-1]
        image, box = letterbox(np.ascontiguousarray(image_bgr), short_side, self.max_size, self.divisor)
        masks = resize_masks(masks, box.resized)
        if ignore is not None:
            ignore = resize_masks(ignore[None], box.resized)[0].astype(bool)
        return image, masks, ignore, box

