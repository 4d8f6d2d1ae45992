"""Post-processing shared by every backend: graph outputs -> ``Instances`` at the image's size.

The graph returns K fixed slots of mask probabilities at stride 8 of the padded input. Only
the slots that pass the score threshold are upsampled (to the padded input size), cropped to
the resized image (the padding removed), resized to the original size and thresholded, as
mmdetection's SOLOv2 does — computed as one small matrix per axis, in bounded chunks of masks,
so many instances on a large photo stay fast and within memory. On a GPU the masks are made
there and leave it as bits; their boxes are found there too.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from csrinfer.runtime.instances import Instances, boxes_from_extents
from csrinfer.letterbox import Letterbox


# Float masks at the original size are made this many pixels at a time (about 64 MB of
# float32), so that 100 instances on a large photo never hold all their float masks at once.
CHUNK_PIXELS = 16_000_000


def to_instances(scores, labels, masks, box: Letterbox, class_names: Sequence[str] = (),
                 score_thr: float = 0.0, mask_thr: float = 0.5,
                 category_ids: Sequence[int] | None = None) -> Instances:
    """One image's graph outputs -> Instances.

    Args:
        scores: [K] (numpy or torch, any float dtype, any device).
        labels: [K] integer.
        masks: [K, Hp/8, Wp/8] mask probabilities (stride 8 of the padded input).
        box: where the image sits in the padded input (``box.padded`` is the input's size).
        score_thr: instances scoring above this are kept; the default drops only the graph's
            empty slots (score 0), the graph having applied the model's thresholds.
    """
    scores = torch.as_tensor(scores).float()
    keep = torch.nonzero(scores > score_thr).flatten()
    h, w = box.original
    if keep.numel() == 0:
        return Instances.empty(h, w, class_names, category_ids)
    keep = keep[torch.argsort(scores[keep], descending=True)]
    masks, labels = torch.as_tensor(masks), torch.as_tensor(labels)
    n = keep.numel()
    # A GPU (any accelerator) sends its masks as bits, 8x fewer bytes to copy off (unpacked on the host in one
    # pass), and finds which rows / columns each mask touches itself; the CPU keeps them as they are.
    on_gpu = masks.device.type != "cpu"
    host = np.empty((n, h, (w + 7) // 8), np.uint8) if on_gpu else np.empty((n, h, w), bool)
    rows, cols = np.empty((n, h), bool), np.empty((n, w), bool)
    chunk = max(1, CHUNK_PIXELS // (h * w))
    for start in range(0, n, chunk):
        end = min(n, start + chunk)
        probs = masks[keep[start:end].to(masks.device)].float()  # only the kept masks move on
        pasted = paste_masks(probs, box, mask_thr)
        if on_gpu:
            host[start:end] = pack_bits(pasted).cpu().numpy()
            rows[start:end], cols[start:end] = pasted.any(2).cpu().numpy(), pasted.any(1).cpu().numpy()
        else:  # numpy's reductions are 10x faster than torch's on the CPU
            host[start:end] = pasted.numpy()
            rows[start:end], cols[start:end] = host[start:end].any(2), host[start:end].any(1)
    bool_masks = np.unpackbits(host, axis=-1, count=w).view(bool) if on_gpu else host
    return Instances(
        masks=bool_masks,
        labels=labels[keep.to(labels.device)].cpu().numpy().astype(np.int64),
        scores=scores[keep].cpu().numpy().astype(np.float32),
        boxes=boxes_from_extents(rows, cols),
        class_names=tuple(class_names),
        category_ids=category_ids,
    )


def pack_bits(masks: torch.Tensor) -> torch.Tensor:
    """bool [..., W] -> uint8 [..., ceil(W/8)], the first pixel in the highest bit (numpy's
    ``packbits`` order, so ``np.unpackbits(..., count=W)`` undoes it)."""
    w = masks.shape[-1]
    padded = F.pad(masks.to(torch.uint8), (0, -w % 8)).unflatten(-1, (-1, 8))
    shifts = torch.arange(7, -1, -1, dtype=torch.uint8, device=masks.device)
    return (padded << shifts).sum(-1, dtype=torch.uint8)


def paste_masks(probs: torch.Tensor, box: Letterbox, mask_thr: float = 0.5) -> torch.Tensor:
    """float [N, Hp/8, Wp/8] probabilities -> bool [N, H, W] at the original image size, on
    the probabilities' device.

    As mmdetection's SOLOv2: upsample to the padded input (bilinear), crop the padding, resize
    to the original size (bilinear), threshold. Both resizes and the crop are linear maps along
    rows and columns separately, so they are applied as one matrix per axis
    (``rows @ probs @ cols.T``): two batched matrix products instead of two interpolations
    and the padded-size intermediate (2.5-3x faster for 100 masks on the 2-core CPU machine).
    """
    rows = resize_matrix(probs.shape[1], box.padded[0], box.resized[0], box.original[0], str(probs.device))
    cols = resize_matrix(probs.shape[2], box.padded[1], box.resized[1], box.original[1], str(probs.device))
    return torch.matmul(rows, torch.matmul(probs, cols.T)) > mask_thr


@functools.lru_cache(maxsize=64)
def resize_matrix(size: int, padded: int, kept: int, out: int, device: str = "cpu") -> torch.Tensor:
    """float [out, size]: along one axis, upsample ``size`` -> ``padded`` (bilinear, half-pixel
    centres), keep the first ``kept``, resize to ``out``.

    Built by running those very interpolations on the identity, so it is them, exactly.
    """
    eye = torch.eye(size, device=device)[None]  # [1, size (as channels), size (as length)]
    up = F.interpolate(eye, size=padded, mode="linear", align_corners=False)[..., :kept]
    return F.interpolate(up, size=out, mode="linear", align_corners=False)[0].T.contiguous()
