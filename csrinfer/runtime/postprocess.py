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


def to_instances(scores, labels, masks, box: Letterbox, class_names: Sequence[str] = (),
                 score_thr: float = 0.1, mask_thr: float = 0.5) -> Instances:
    """One image's graph outputs -> Instances.

    Args:
        scores: [K] (numpy or torch, any float dtype).
        labels: [K] integer.
        masks: [K, Hp/8, Wp/8] mask probabilities (stride 8 of the padded input).
        box: where the image sits in the padded input.
    """
    scores = torch.as_tensor(scores).float()
    keep = torch.nonzero(scores > score_thr).flatten()
    h, w = box.original
    if keep.numel() == 0:
        return Instances.empty(h, w, class_names)
    keep = keep[torch.argsort(scores[keep], descending=True)]
    probs = torch.as_tensor(masks)[keep].float()[None]  # only the kept masks move on
    ph, pw = box.padded
    rh, rw = box.resized
    probs = F.interpolate(probs, size=(ph, pw), mode="bilinear", align_corners=False)[:, :, :rh, :rw]
    probs = F.interpolate(probs, size=(h, w), mode="bilinear", align_corners=False)[0]
    bool_masks = (probs > mask_thr).cpu().numpy()
    return Instances(
        masks=bool_masks,
        labels=torch.as_tensor(labels)[keep].cpu().numpy().astype(np.int64),
        scores=scores[keep].cpu().numpy().astype(np.float32),
        boxes=masks_to_boxes(bool_masks),
        class_names=tuple(class_names),
    )
