"""Pre-processing of a batch for a backend: each image letterboxed (csrinfer/letterbox.py) by
the model's resize rule, on the host with OpenCV or, for the GPU fast path, on the device
(csrinfer/runtime/gpu_preprocess.py), then stacked into one padded batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from csrinfer.letterbox import Letterbox, letterbox, stack_batch

def letterbox_batch(images_bgr: Sequence[np.ndarray], info, fit: Sequence[int] | None = None,
                    device: str | None = None) -> tuple[np.ndarray, list[Letterbox]]:
    """uint8 BGR images -> (float32 [B, 3, H, W] RGB 0-255 padded, where each image went), by
    the resize rule of ``info`` (a :class:`csrinfer.contract.model_info.ModelInfo`).

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
