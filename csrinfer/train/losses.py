"""The training loss of the paper (Eq. 6): L = α·L_cls + β·L_dice + γ·L_focal.

- L_cls, the paper's "cross-entropy" category term, is sigmoid focal loss (α=0.25, γ=2) over
  every grid cell and class, summed and divided by (positives + 1), as mmdetection's SOLOv2;
- L_dice is SOLO's dice loss (squared denominators) of each positive (cell, object) pair's
  mask, summed over the pairs and divided by the number of distinct positive cells, as
  mmdetection's SOLOv2 (a cell claimed by two objects adds both its losses, counted once);
- L_focal is sigmoid focal loss on the same mask pixels, averaged over the pixels of all pairs
  (the paper's term; mmdetection's SOLOv2 has none).

Plain functions, like ``torchvision.ops.sigmoid_focal_loss`` (which is the element-wise focal
term used here).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

from csrinfer.model.head import HeadOutputs, dynamic_mask_logits
from csrinfer.train.targets import IGNORE, BatchTargets


def dice_loss(inputs: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None,
              eps: float = 1e-3) -> torch.Tensor:
    """SOLO's dice loss of each mask: 1 - 2·Σpt / (Σp² + eps + Σt² + eps).

    Args:
        inputs: float [N, H, W] logits.
        targets: float [N, H, W] in [0, 1].
        weights: float [N, H, W]; pixels of weight 0 are left out.
    Returns:
        float [N], one loss per mask.
    """
    p = inputs.sigmoid().flatten(1)
    t = targets.flatten(1).to(p.dtype)
    if weights is not None:
        w = weights.flatten(1).to(p.dtype)
        p, t = p * w, t * w
    inter = (p * t).sum(1)
    return 1.0 - 2.0 * inter / ((p * p).sum(1) + eps + (t * t).sum(1) + eps)


def category_loss(cate_preds: list[torch.Tensor], cate_labels: list[torch.Tensor], alpha: float = 0.25,
                  gamma: float = 2.0) -> torch.Tensor:
    """Sigmoid focal loss over all cells and classes, divided by (number of positive cells + 1).

    cate_preds: per grid, float [B, C, S, S] logits; cate_labels: per grid, int64 [B, S, S]
    (C = background, ``IGNORE`` = left out).
    """
    num_classes = cate_preds[0].shape[1]
    logits = torch.cat([p.permute(0, 2, 3, 1).reshape(-1, num_classes) for p in cate_preds])
    labels = torch.cat([lab.reshape(-1) for lab in cate_labels]).to(logits.device)
    keep = labels != IGNORE
    logits, labels = logits[keep], labels[keep]
    onehot = F.one_hot(labels, num_classes + 1)[:, :num_classes].to(logits.dtype)
    num_pos = int((labels < num_classes).sum())
    return sigmoid_focal_loss(logits.float(), onehot.float(), alpha, gamma, reduction="sum") / (num_pos + 1)


def mask_focal_loss(inputs: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None,
                    alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Sigmoid focal loss of mask pixels [N, H, W], the mean over pixels of non-zero weight."""
    loss = sigmoid_focal_loss(inputs.float(), targets.float(), alpha, gamma, reduction="none")
    if weights is None:
        return loss.mean()
    return (loss * weights).sum() / weights.sum().clamp(min=1.0)


def positive_mask_logits(outputs: HeadOutputs, targets: BatchTargets) -> torch.Tensor:
    """Mask logits [P, H/8, W/8] of the positive (cell, object) pairs: each cell's dynamic kernel
    applied to its image's mask features (only the positives are computed, as SOLOv2 trains)."""
    kernels = torch.cat([k.flatten(2) for k in outputs.kernel_preds], dim=2).transpose(1, 2)  # [B, cells, E]
    feats = outputs.mask_feats
    pos_image = targets.pos_image.to(feats.device)
    pos_cell = targets.pos_cell.to(feats.device)
    logits = feats.new_zeros((targets.num_pos,) + feats.shape[-2:])
    for b in torch.unique(pos_image).tolist():
        sel = torch.nonzero(pos_image == b).flatten()
        logits[sel] = dynamic_mask_logits(kernels[b, pos_cell[sel]][None], feats[b:b + 1])[0].to(logits.dtype)
    return logits


def solo_loss(outputs: HeadOutputs, targets: BatchTargets, cls_weight: float = 1.0, dice_weight: float = 2.0,
              focal_weight: float = 3.0, alpha: float = 0.25, gamma: float = 2.0) -> dict[str, torch.Tensor]:
    """Eq. 6. Returns ``loss`` (the weighted total) and its unweighted terms ``loss_cls``,
    ``loss_dice``, ``loss_focal``."""
    loss_cls = category_loss(outputs.cate_preds, targets.cate_labels, alpha, gamma)
    if targets.num_pos:
        device = outputs.mask_feats.device
        logits = positive_mask_logits(outputs, targets).float()
        index = targets.pos_instance.to(device)
        mask_t = targets.masks.to(device)[index]
        mask_w = targets.mask_weights.to(device)[index]
        loss_dice = dice_loss(logits, mask_t, mask_w).sum() / targets.num_pos_cells
        loss_focal = mask_focal_loss(logits, mask_t, mask_w, alpha, gamma)
    else:
        # No object in the batch: zero mask terms that still touch the kernel and mask branches,
        # so every parameter gets a (zero) gradient and DDP's reducer is satisfied.
        zero = sum(k.sum() for k in outputs.kernel_preds) * 0.0 + outputs.mask_feats.sum() * 0.0
        loss_dice = loss_focal = zero.float()
    total = cls_weight * loss_cls + dice_weight * loss_dice + focal_weight * loss_focal
    return {"loss": total, "loss_cls": loss_cls, "loss_dice": loss_dice, "loss_focal": loss_focal}
