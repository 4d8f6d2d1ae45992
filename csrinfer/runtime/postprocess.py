"""Post-processing shared by every backend: graph outputs -> ``Instances`` at the image's size.

The graph returns K fixed slots of mask probabilities at stride 8 of the padded input. Only
the slots that pass the score threshold are upsampled (to the padded input size), cropped to
the resized image (the padding removed), resized to the original size and thresholded, as
mmdetection's SOLOv2 does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from csrinfer.runtime.instances import Instances, masks_to_boxes
from csrinfer.runtime.preprocess import Letterbox


# Upsampled float masks are made this many pixels at a time (about 64 MB of float32), so that
# 100 instances on a large photo never hold all their float masks at once.
CHUNK_PIXELS = 16_000_000


def to_instances(scores, labels, masks, box: Letterbox, class_names: Sequence[str] = (),
                 score_thr: float = 0.1, mask_thr: float = 0.5) -> Instances:
    """One image's graph outputs -> Instances.

    Args:
        scores: [K] (numpy or torch, any float dtype, any device).
        labels: [K] integer.
        masks: [K, Hp/8, Wp/8] mask probabilities (stride 8 of the padded input).
        box: where the image sits in the padded input (``box.padded`` is the input's size).
    """
    scores = torch.as_tensor(scores).float()
    keep = torch.nonzero(scores > score_thr).flatten()
    h, w = box.original
    if keep.numel() == 0:
        return Instances.empty(h, w, class_names)
    keep = keep[torch.argsort(scores[keep], descending=True)]
    masks, labels = torch.as_tensor(masks), torch.as_tensor(labels)
    bool_masks = np.empty((keep.numel(), h, w), bool)
    chunk = max(1, CHUNK_PIXELS // max(box.padded[0] * box.padded[1], h * w))
    for start in range(0, keep.numel(), chunk):
        probs = masks[keep[start:start + chunk].to(masks.device)].float()  # only the kept masks move on
        bool_masks[start:start + chunk] = paste_masks(probs, box, mask_thr)
    return Instances(
        masks=bool_masks,
        labels=labels[keep.to(labels.device)].cpu().numpy().astype(np.int64),
        scores=scores[keep].cpu().numpy().astype(np.float32),
        boxes=masks_to_boxes(bool_masks),
        class_names=tuple(class_names),
    )


def paste_masks(probs: torch.Tensor, box: Letterbox, mask_thr: float = 0.5) -> np.ndarray:
    """float [N, Hp/8, Wp/8] probabilities -> bool [N, H, W] at the original image size.

    As mmdetection's SOLOv2: upsample to the padded input, crop the padding, resize to the
    original size, threshold.
    """
    ph, pw = box.padded
    rh, rw = box.resized
    h, w = box.original
    probs = F.interpolate(probs[None], size=(ph, pw), mode="bilinear", align_corners=False)[:, :, :rh, :rw]
    if (rh, rw) != (h, w):
        probs = F.interpolate(probs, size=(h, w), mode="bilinear", align_corners=False)
    return (probs[0] > mask_thr).cpu().numpy()
