"""Inference post-processing inside the network (design.md §1, SOLOv2's test settings).

Raw grids -> fixed-size final instances, in tensor ops only (TopK, Gather, MatMul, Trilu,
element-wise), so the same code exports to ONNX and TensorRT and the engine returns final
instances rather than raw grids:

1. local-maximum filter on each grid and sigmoid category scores (``points_nms``);
2. TopK ``nms_pre`` (cell, class) candidates over all grids;
3. their masks by the dynamic 1x1 kernels (a batched matmul);
4. drop candidates under ``score_thr`` or whose binary mask covers no more than their grid's
   ``min_mask_areas`` pixels of the input (SOLOv2's small-mask filter, see below), rescore by
   maskness (mean probability inside the binarised mask);
5. Matrix NMS (``matrix_nms``), drop decayed scores under ``filter_thr``, keep the top
   ``max_per_img``.

Dropped and padded entries have score 0, so every output has a fixed size. Step 2 comes
before the score cut (mmdetection cuts first and takes ``nms_pre`` after rescoring) because a
graph needs a fixed candidate count; the candidates are the same whenever at most ``nms_pre``
of them score above ``score_thr``.

The small-mask filter is SOLOv2's in input-area terms: mmdetection drops a mask with no more
pixels than its level's stride (8, 8, 16, 32, 32) counted on its stride-4 mask branch, that is
no more than 16 x stride input pixels (128, 128, 256, 512, 512). Our masks are at stride
``mask_stride`` (8), so each mask pixel stands for 64 input pixels and the same limit is a
quarter of the reference's pixel counts (2, 2, 4, 8, 8 mask pixels).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from csrinfer.model.head import dynamic_mask_logits


def points_nms(logits: torch.Tensor) -> torch.Tensor:
    """SOLOv2's local-maximum filter: probabilities of cells not beaten by their 2x2 upper-left window.

    logits: [B, C, S, S] -> probabilities with the filtered cells set to 0. The comparison is
    made on logits, not on sigmoid outputs: sigmoid saturates, so neighbours that differ in
    logit can tie in probability, and which of them survives would then depend on the
    backend's last bit (and on FP16).
    """
    lmax = F.max_pool2d(logits, kernel_size=2, stride=1, padding=1)[:, :, :-1, :-1]
    return logits.sigmoid() * (lmax == logits).to(logits.dtype)


def matrix_nms(masks: torch.Tensor, labels: torch.Tensor, scores: torch.Tensor, areas: torch.Tensor,
               kernel: str = "gaussian", sigma: float = 2.0) -> torch.Tensor:
    """Matrix NMS (SOLOv2): decay each mask's score by its overlap with higher-scored masks.

    Args:
        masks: float [B, N, M] binary masks, flattened, sorted by score (descending).
        labels: int [B, N]; only masks of the same class decay each other.
        scores: float [B, N], sorted descending.
        areas: float [B, N], the masks' pixel counts.
        kernel: "gaussian" (exp(-sigma * iou^2)) or "linear" (1 - iou).
    Returns:
        float [B, N] decayed scores, in the input order.
    """
    inter = torch.bmm(masks, masks.transpose(1, 2))
    union = areas[:, :, None] + areas[:, None, :] - inter
    iou = (inter / union.clamp(min=1.0)).triu(diagonal=1)
    same_class = (labels[:, :, None] == labels[:, None, :]).to(iou.dtype)
    decay_iou = iou * same_class  # [b, i, j]: i scored above j
    # How much i itself was suppressed: its largest IoU with anything above it.
    compensate = decay_iou.amax(dim=1)[:, :, None]  # [b, i, 1]
    if kernel == "gaussian":
        decay = torch.exp(-sigma * (decay_iou.square() - compensate.square()))
    elif kernel == "linear":
        decay = (1.0 - decay_iou) / (1.0 - compensate).clamp(min=1e-6)
    else:
        raise ValueError(f"unknown Matrix NMS kernel '{kernel}'; use 'gaussian' or 'linear'")
    return scores * decay.amin(dim=1)


def _gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x: [B, N, ...], index: [B, K] -> [B, K, ...]."""
    shape = index.shape + x.shape[2:]
    expanded = index.reshape(index.shape + (1,) * (x.dim() - 2)).expand(shape)
    return x.gather(1, expanded)


def postprocess(cate_preds: Sequence[torch.Tensor], kernel_preds: Sequence[torch.Tensor],
                mask_feats: torch.Tensor, min_mask_areas: Sequence[float], score_thr: float = 0.1,
                nms_pre: int = 500, mask_thr: float = 0.5, nms_kernel: str = "gaussian",
                nms_sigma: float = 2.0, filter_thr: float = 0.05, max_per_img: int = 100,
                cell_scores: Callable[[torch.Tensor], torch.Tensor] = points_nms,
                mask_stride: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Head outputs -> final instances.

    ``cell_scores`` turns each grid's logits into local-maximum-filtered probabilities
    (:func:`points_nms`; the SOLOv2 family passes mmdetection's filter on probabilities).
    ``min_mask_areas``: per grid, the input area (pixels of the network input) a candidate's
    binary mask must exceed; ``mask_stride``: input pixels per mask pixel along each side.

    Returns:
        scores: float [B, K] (0 for empty slots), sorted descending.
        labels: int64 [B, K].
        masks: float [B, K, H/s, W/s] mask probabilities at the mask features' stride s.
    """
    b, num_classes = cate_preds[0].shape[:2]
    cells = [p.shape[-2] * p.shape[-1] for p in cate_preds]
    probs = torch.cat([cell_scores(p).flatten(2) for p in cate_preds], dim=2)  # [B, C, N]
    kernels = torch.cat([k.flatten(2) for k in kernel_preds], dim=2).transpose(1, 2)  # [B, N, E]
    min_area_of_cell = torch.cat([
        torch.full((n,), float(a), device=mask_feats.device, dtype=mask_feats.dtype)
        for n, a in zip(cells, min_mask_areas)
    ])

    # Candidates: best (cell, class) pairs; flattened as cell * C + class.
    flat = probs.transpose(1, 2).reshape(b, -1)
    num_pre = min(nms_pre, flat.shape[1])
    cand_scores, cand_index = flat.topk(num_pre, dim=1)
    cand_cells = torch.div(cand_index, num_classes, rounding_mode="floor")
    cand_labels = cand_index - cand_cells * num_classes

    mask_probs = dynamic_mask_logits(_gather_rows(kernels, cand_cells), mask_feats).sigmoid()
    mask_probs = mask_probs.flatten(2)  # [B, P, M]
    binary = (mask_probs > mask_thr).to(mask_probs.dtype)
    areas = binary.sum(dim=2)
    input_areas = areas * float(mask_stride * mask_stride)
    valid = (cand_scores > score_thr) & (input_areas > min_area_of_cell[cand_cells])
    maskness = (mask_probs * binary).sum(dim=2) / areas.clamp(min=1.0)
    rescored = torch.where(valid, cand_scores * maskness, torch.zeros_like(cand_scores))

    rescored, order = rescored.topk(num_pre, dim=1)  # sort, descending
    binary, areas, labels = _gather_rows(binary, order), _gather_rows(areas, order), _gather_rows(cand_labels, order)
    decayed = matrix_nms(binary, labels, rescored, areas, nms_kernel, nms_sigma)
    decayed = torch.where(decayed >= filter_thr, decayed, torch.zeros_like(decayed))

    num_out = min(max_per_img, num_pre)
    scores, keep = decayed.topk(num_out, dim=1)
    keep_in_candidates = _gather_rows(order, keep)
    labels = _gather_rows(labels, keep)
    h, w = mask_feats.shape[-2:]
    masks = _gather_rows(mask_probs, keep_in_candidates).reshape(b, num_out, h, w)
    if num_out < max_per_img:  # fewer candidates than K: pad to the fixed output size
        pad = max_per_img - num_out
        scores = F.pad(scores, (0, pad))
        labels = F.pad(labels, (0, pad))
        masks = F.pad(masks, (0, 0, 0, 0, 0, pad))
    return scores, labels, masks
