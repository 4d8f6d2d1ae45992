"""Pre-processing shared by evaluation, training-time validation and every backend.

The network takes float RGB 0-255 images whose sides are multiples of 32 (design.md §2);
normalisation happens inside the network. Images are resized keeping their aspect ratio
(COCO's 1x rule: short side to 800, long side at most 1333, or to fit a fixed export size),
then padded at the bottom and right with the mean colour, so padded pixels are zero after
normalisation, as mmdetection's data preprocessor pads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

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
    if isinstance(images[0], torch.Tensor):
        out = images[0].new_empty((len(images), 3, ph, pw))
        out[:] = torch.tensor(pad_value, dtype=out.dtype).view(1, 3, 1, 1).to(out.device)
    else:
        out = np.empty((len(images), 3, ph, pw), np.float32)
        out[:] = np.asarray(pad_value, np.float32)[None, :, None, None]
    for i, im in enumerate(images):
        out[i, :, : im.shape[1], : im.shape[2]] = im
    return out


def letterbox_batch(images_bgr: Sequence[np.ndarray], info, fit: Sequence[int] | None = None,
                    device: str | None = None) -> tuple[np.ndarray, list[Letterbox]]:
    """uint8 BGR images -> (float32 [B, 3, H, W] RGB 0-255 padded, where each image went), by
    the resize rule of ``info`` (a :class:`csrinfer.runtime.model_info.ModelInfo`).

    ``fit``: (H, W) every image is letterboxed into (default: the model's static size, else
    each image's own size by the rule, the batch padded to the largest). A static-batch model
    gets its full batch (the missing images repeat the last; their outputs are to be ignored).
    ``device``: letterbox there, as torch tensors (the GPU fast path's ``gpu_preprocess``).
    """
    kwargs = dict(short_side=info.short_side, max_size=info.max_size, divisor=info.size_divisor,
                  fit=fit if fit is not None else info.input_size, pad_value=info.pad_value)
    if device is None:
        resized = [letterbox(im, **kwargs) for im in images_bgr]
    else:  # the uint8 image goes up, resizing and padding happen there
        from csrinfer.runtime.gpu_preprocess import letterbox_tensor

        resized = [letterbox_tensor(im, device, **kwargs) for im in images_bgr]
    tensors = [x for x, _ in resized]
    if info.batch is not None and len(tensors) < info.batch:
        tensors += [tensors[-1]] * (info.batch - len(tensors))
    batch = stack_batch(tensors, info.size_divisor, info.pad_value)
    padded = tuple(batch.shape[2:])  # the masks are at the stride of the batch's size
    return batch, [dataclasses.replace(box, padded=padded) for _, box in resized]
