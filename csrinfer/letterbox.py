"""The letterbox: how an image becomes the network's input, shared by data loading, evaluation
and every backend (no torch import).

The network takes float RGB 0-255 images whose sides are multiples of 32 (design.md §2);
normalisation happens inside the network. Images are resized keeping their aspect ratio
(COCO's 1x rule: short side to 800, long side at most 1333, or to fit a fixed export size),
then padded at the bottom and right with the mean colour, so padded pixels are zero after
normalisation, as mmdetection's data preprocessor pads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from csrinfer.config import IMAGENET_MEAN

PAD_VALUE_RGB = IMAGENET_MEAN  # zero after normalisation


@dataclass(frozen=True)
class Letterbox:
    """Where an image went inside the network input."""

    original: tuple[int, int]  # (H, W) of the image given
    resized: tuple[int, int]  # (H, W) after resizing, before padding
    padded: tuple[int, int]  # (H, W) of the network input


def padded_size(height: int, width: int, divisor: int = 32) -> tuple[int, int]:
    """Smallest (H, W) >= the input whose sides are multiples of ``divisor``."""
    return -(-height // divisor) * divisor, -(-width // divisor) * divisor


def resized_size(height: int, width: int, short_side: int = 800, max_size: int = 1333,
                 fit: tuple[int, int] | None = None) -> tuple[int, int]:
    """Size after an aspect-preserving resize.

    Without ``fit``: short side to ``short_side`` unless the long side would pass ``max_size``.
    With ``fit`` = (H, W): the largest size that fits inside it (static-shape engines).
    """
    if fit is not None:
        scale = min(fit[0] / height, fit[1] / width)
    else:
        scale = min(short_side / min(height, width), max_size / max(height, width))
    # mmcv rounds half up (int(x * s + 0.5)), not to even.
    return max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))


def letterbox(image_bgr: np.ndarray, short_side: int = 800, max_size: int = 1333, divisor: int = 32,
              fit: tuple[int, int] | None = None,
              pad_value: Sequence[float] = PAD_VALUE_RGB) -> tuple[np.ndarray, Letterbox]:
    """uint8 BGR [H, W, 3] -> (float32 RGB [3, H', W'] 0-255 padded, Letterbox).

    ``fit`` = (H, W) gives exactly that padded size (static-shape engines); otherwise the
    padded size is the resized size rounded up to ``divisor``. ``pad_value`` is RGB 0-255.
    """
    h, w = image_bgr.shape[:2]
    rh, rw = resized_size(h, w, short_side, max_size, fit)
    interp = cv2.INTER_AREA if rh < h else cv2.INTER_LINEAR
    resized = cv2.resize(image_bgr, (rw, rh), interpolation=interp) if (rh, rw) != (h, w) else image_bgr
    ph, pw = fit if fit is not None else padded_size(rh, rw, divisor)
    out = np.empty((3, ph, pw), np.float32)
    out[:] = np.asarray(pad_value, np.float32)[:, None, None]
    out[:, :rh, :rw] = resized[:, :, ::-1].transpose(2, 0, 1)
    return out, Letterbox((h, w), (rh, rw), (ph, pw))


def stack_batch(images: Sequence[np.ndarray], divisor: int = 32,
                pad_value: Sequence[float] = PAD_VALUE_RGB) -> np.ndarray:
    """float32 [3, Hi, Wi] images -> [B, 3, H, W] padded to the largest (a multiple of ``divisor``).

    numpy arrays give a numpy batch; torch tensors (the GPU fast path) a tensor on their device.
    """
    ph = max(padded_size(*im.shape[1:], divisor)[0] for im in images)
    pw = max(padded_size(*im.shape[1:], divisor)[1] for im in images)
    if hasattr(images[0], "new_empty"):  # a torch tensor; torch is not imported for numpy input
        out = images[0].new_empty((len(images), 3, ph, pw))
        out[:] = out.new_tensor(pad_value).view(1, 3, 1, 1)
    else:
        out = np.empty((len(images), 3, ph, pw), np.float32)
        out[:] = np.asarray(pad_value, np.float32)[None, :, None, None]
    for i, im in enumerate(images):
        out[i, :, : im.shape[1], : im.shape[2]] = im
    return out
