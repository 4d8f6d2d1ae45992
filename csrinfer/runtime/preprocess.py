"""Pre-processing shared by training, evaluation and every backend.

The network takes float RGB 0-255 images whose sides are multiples of 32 (design.md §2);
normalisation happens inside the network. Padding uses the dataset mean colour, so padded
pixels are zero after normalisation, as mmdetection's data preprocessor pads.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

PAD_VALUE_RGB = (123.675, 116.28, 103.53)  # ImageNet mean, 0-255


def padded_size(height: int, width: int, divisor: int = 32) -> tuple[int, int]:
    """Smallest (H, W) >= the input whose sides are multiples of ``divisor``."""
    return -(-height // divisor) * divisor, -(-width // divisor) * divisor


def pad_to_divisor(images: torch.Tensor, divisor: int = 32,
                   value: Sequence[float] = PAD_VALUE_RGB) -> torch.Tensor:
    """Pad float [B, 3, H, W] on the bottom and right to multiples of ``divisor``."""
    h, w = images.shape[-2:]
    ph, pw = padded_size(h, w, divisor)
    if (ph, pw) == (h, w):
        return images
    out = images.new_empty(images.shape[:-2] + (ph, pw))
    out[:] = torch.as_tensor(value, dtype=images.dtype, device=images.device).view(3, 1, 1)
    out[..., :h, :w] = images
    return out
