"""Optimiser and learning-rate schedule of the paper (§IV) and mmdetection's 1x schedule.

AdamW, lr 1e-4 for a total batch of 4, weight decay 0.05; the lr scales linearly with the
total batch (Goyal et al.); linear warm-up over the first iterations; x0.1 at epochs 8 and 11.
The lr is a pure function of the iteration, so a resumed run needs nothing but the iteration
to be back on the schedule. A schedule fitted to a time budget (``train(..., fit_to_time=True)``)
keeps the milestones at the same fractions of its (re-estimated) length.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def scaled_lr(base_lr: float, total_batch_size: int, base_batch_size: int) -> float:
    """The linear scaling rule: ``base_lr`` is for ``base_batch_size`` images per step."""
    return base_lr * total_batch_size / base_batch_size


def milestone_iters(milestones: Sequence[int], epochs: int, total_iters: int) -> list[int]:
    """Milestone epochs of an ``epochs``-epoch schedule as iterations of one ``total_iters`` long
    (``epochs * iters_per_epoch`` normally; another length when fitted to a time budget)."""
    return [round(m / epochs * total_iters) for m in milestones]


def lr_factor(iteration: int, milestones: Sequence[int], gamma: float = 0.1, warmup_iters: int = 500,
              warmup_ratio: float = 0.001) -> float:
    """Multiplier of the peak lr at ``iteration`` (0-based): linear warm-up from ``warmup_ratio``,
    times ``gamma`` for each milestone (an iteration, see :func:`milestone_iters`) reached."""
    factor = gamma ** sum(iteration >= m for m in milestones)
    if iteration < warmup_iters:
        factor *= warmup_ratio + (1.0 - warmup_ratio) * iteration / warmup_iters
    return factor


def build_optimizer(model: nn.Module, lr: float, weight_decay: float = 0.05) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; norms and biases get no weight decay (timm's rule:
    decaying a GroupNorm's scale towards 0 only fights the normalisation)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
