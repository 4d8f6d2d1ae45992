"""Post-processing shared by every backend: graph outputs -> ``Instances`` at the image's size.

The graph returns K fixed slots of mask probabilities at stride 8 of the padded input. Only
the slots that pass the score threshold are kept, as they are, where they are
(:class:`csrinfer.runtime.masks.LazyMasks`); their boxes are found at once. A mask is made
full-size only when read: upsampled (to the padded input size), cropped to the resized image
(the padding removed), resized to the original size and thresholded, as mmdetection's SOLOv2
does — computed as one small matrix per axis (``paste_masks``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from csrinfer.letterbox import Letterbox
from csrinfer.runtime.instances import Instances
from csrinfer.runtime.masks import CHUNK_PIXELS, LazyMasks  # noqa: F401 - CHUNK_PIXELS: its old home
from csrinfer.runtime.paste import pack_bits, paste_masks, resize_matrix  # noqa: F401 - their old home


def to_instances(scores, labels, masks, box: Letterbox, class_names: Sequence[str] = (),
                 score_thr: float = 0.0, mask_thr: float = 0.5,
                 category_ids: Sequence[int] | None = None, agnostic_nms: bool = False) -> Instances:
    """One image's graph outputs -> Instances.

    Args:
        scores: [K] (numpy or torch, any float dtype, any device).
        labels: [K] integer.
        masks: [K, Hp/8, Wp/8] mask probabilities (stride 8 of the padded input).
        box: where the image sits in the padded input (``box.padded`` is the input's size).
        score_thr: instances scoring above this are kept; the default drops only the graph's
            empty slots (score 0), the graph having applied the model's thresholds.
        agnostic_nms: also run Matrix NMS across classes on the kept instances
            (:func:`agnostic_matrix_nms`).
    """
    scores = torch.as_tensor(scores).float()
    keep = torch.nonzero(scores > score_thr).flatten()
    h, w = box.original
    if keep.numel() == 0:
        return Instances.empty(h, w, class_names, category_ids)
    keep = keep[torch.argsort(scores[keep], descending=True)]
    labels = torch.as_tensor(labels)
    if not isinstance(masks, (np.ndarray, torch.Tensor)):
        masks = np.asarray(masks, np.float32)
    # Only the kept masks are kept, where they are (numpy stays numpy: ONNX Runtime's output).
    probs = masks[keep.cpu().numpy()] if isinstance(masks, np.ndarray) else masks[keep.to(masks.device)]
    kept_scores = scores[keep]
    if agnostic_nms:
        order, kept_scores = agnostic_matrix_nms(probs, kept_scores, mask_thr)
        probs, keep = probs[order.cpu().numpy() if isinstance(probs, np.ndarray) else order.to(probs.device)], keep[order]
    lazy = LazyMasks(probs, box, mask_thr)
    return Instances(
        masks=lazy,
        labels=labels[keep.to(labels.device)].cpu().numpy().astype(np.int64),
        scores=kept_scores.cpu().numpy().astype(np.float32),
        boxes=lazy.boxes(),
        class_names=tuple(class_names),
        category_ids=category_ids,
    )


# Class-agnostic Matrix NMS: SOLOv2's kernel and its score cut (the model's own defaults).
AGNOSTIC_SIGMA = 2.0
AGNOSTIC_MIN_SCORE = 0.05


def agnostic_matrix_nms(probs, scores: torch.Tensor, mask_thr: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Matrix NMS across classes on instances already kept (sorted by score, descending).

    SOLOv2 decays a mask only by masks of its own class, so one object can be kept once per
    class it scores. This decays every mask by every higher-scored one (gaussian, sigma 2, on
    the masks binarised at the feature stride, as the graph's own Matrix NMS), drops those
    below 0.05 and sorts again. Runs where the masks are.

    Returns:
        (indices into the instances to keep, in score order; their decayed scores).
    """
    from csrinfer.model.postprocess import matrix_nms

    probs = torch.as_tensor(probs)
    binary = (probs.float() > mask_thr).flatten(1).float()[None]
    scores = scores.to(probs.device)
    decayed = matrix_nms(binary, torch.zeros_like(scores, dtype=torch.int64)[None], scores[None],
                         binary.sum(-1), "gaussian", AGNOSTIC_SIGMA)[0]
    keep = torch.nonzero(decayed >= AGNOSTIC_MIN_SCORE).flatten()
    keep = keep[torch.argsort(decayed[keep], descending=True, stable=True)]
    return keep.cpu(), decayed[keep].cpu()
