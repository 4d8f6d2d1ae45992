"""Pre-processing on the GPU: the same letterbox as ``preprocess.letterbox``, in torch ops.

The uint8 BGR image is uploaded as is (a third of the bytes of float32 RGB) and resized,
flipped to RGB and padded on the device. Geometry is :mod:`csrinfer.letterbox`'s own
(``resized_size``, ``padded_size``, the INTER_AREA-when-shrinking rule). The resize follows
OpenCV's definitions — INTER_AREA's pixel-area weights when shrinking, INTER_LINEAR's
half-pixel bilinear weights otherwise — applied as two separable weighted gathers, then
rounded to whole values as OpenCV's uint8 output is. Values match ``cv2.resize`` to within 1
grey level (OpenCV's bilinear uses 11-bit fixed-point weights); tests check it.

It pays: on an H200 a 480x800 image to a 1344x800 input took 0.50 ms here against 5.8 ms for
OpenCV's letterbox on the host plus the upload (median of 15,
``benchmarks/results/gpu_kernel_h200.json``, ``e2e`` stage, ``preprocess``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

from csrinfer.letterbox import PAD_VALUE_RGB, Letterbox, padded_size, resized_size


@lru_cache(maxsize=64)
def resize_taps(src: int, dst: int, area: bool) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's 1-D resize taps from ``src`` to ``dst`` pixels: (index int64 [dst, K], weight float32 [dst, K]).

    ``area`` and shrinking: INTER_AREA (each output pixel averages the input pixels its cell
    covers, weighted by the covered fraction). Otherwise INTER_LINEAR: the sample at
    (x + 0.5) * scale - 0.5 between its two neighbours, clamped at the borders.
    Unused taps have weight 0.
    """
    scale = src / dst
    if area and scale >= 1.0:
        rows = [_area_taps(dx, scale, src) for dx in range(dst)]
    else:
        rows = [_linear_taps(dx, scale, src) for dx in range(dst)]
    k = max(len(r) for r in rows)
    index = np.zeros((dst, k), np.int64)
    weight = np.zeros((dst, k), np.float32)
    for dx, taps in enumerate(rows):
        for t, (i, w) in enumerate(taps):
            index[dx, t], weight[dx, t] = i, w
    return index, weight


def _area_taps(dx: int, scale: float, src: int) -> list[tuple[int, float]]:
    # OpenCV's computeResizeAreaTab: the cell [dx * scale, (dx + 1) * scale) over unit pixels.
    f1 = dx * scale
    f2 = f1 + scale
    cell = min(scale, src - f1)
    s1, s2 = math.ceil(f1), math.floor(f2)
    s2 = min(s2, src - 1)
    s1 = min(s1, s2)
    taps = []
    if s1 - f1 > 1e-3:
        taps.append((s1 - 1, (s1 - f1) / cell))
    taps += [(s, 1.0 / cell) for s in range(s1, s2)]
    if f2 - s2 > 1e-3:
        taps.append((s2, min(f2 - s2, 1.0, cell) / cell))
    return taps


def _linear_taps(dx: int, scale: float, src: int) -> list[tuple[int, float]]:
    f = (dx + 0.5) * scale - 0.5
    s = math.floor(f)
    f -= s
    if s < 0:
        s, f = 0, 0.0
    if s >= src - 1:
        s, f = src - 1, 0.0
    return [(s, 1.0 - f), (min(s + 1, src - 1), f)]


def _resample(x: torch.Tensor, dim: int, dst: int, area: bool) -> torch.Tensor:
    """Resize float x [C, H, W] along ``dim`` (1 or 2) to ``dst`` pixels."""
    index, weight = resize_taps(x.shape[dim], dst, area)
    index = torch.from_numpy(index).to(x.device, non_blocking=True)
    weight = torch.from_numpy(weight).to(x.device, non_blocking=True)
    taps = x.index_select(dim, index.flatten()).unflatten(dim, index.shape)  # [C, dst, K, W] or [C, H, dst, K]
    if dim == 1:
        return (taps * weight[:, :, None]).sum(dim=2)
    return (taps * weight).sum(dim=3)


def letterbox_tensor(image_bgr, device=None, short_side: int = 800, max_size: int = 1333, divisor: int = 32,
                     fit: tuple[int, int] | None = None,
                     pad_value: Sequence[float] = PAD_VALUE_RGB) -> tuple[torch.Tensor, Letterbox]:
    """uint8 BGR [H, W, 3] (numpy or torch) -> (float32 RGB [3, H', W'] 0-255 padded on ``device``, Letterbox).

    Same contract as :func:`csrinfer.letterbox.letterbox`, computed on ``device``.
    """
    image = torch.as_tensor(np.ascontiguousarray(image_bgr) if isinstance(image_bgr, np.ndarray) else image_bgr)
    if image.dim() != 3 or image.shape[2] != 3 or image.dtype != torch.uint8:
        raise ValueError(f"letterbox_tensor takes uint8 BGR [H, W, 3], got {image.dtype} {tuple(image.shape)}")
    h, w = image.shape[:2]
    rh, rw = resized_size(h, w, short_side, max_size, fit)
    x = image.to(device, non_blocking=True).permute(2, 0, 1).flip(0).float()  # RGB [3, H, W]
    if (rh, rw) != (h, w):
        area = rh < h  # preprocess.letterbox: INTER_AREA when shrinking, INTER_LINEAR otherwise
        # OpenCV rounds its uint8 results half up.
        x = _resample(_resample(x, 2, rw, area), 1, rh, area).add_(0.5).floor_().clamp_(0, 255)
    ph, pw = fit if fit is not None else padded_size(rh, rw, divisor)
    out = torch.empty((3, ph, pw), dtype=torch.float32, device=x.device)
    out[:] = torch.tensor(pad_value, dtype=torch.float32).view(3, 1, 1).to(x.device, non_blocking=True)
    out[:, :rh, :rw] = x
    return out, Letterbox((h, w), (rh, rw), (ph, pw))
