"""Backbone warm-up on object crops: a stand-in for the paper's ImageNet-pretrained backbone.

The paper (§IV) starts from an ImageNet-pretrained ResNet-50. Where no ImageNet weights can be
had (offline machines, ``model.pretrained: false``), the backbone would start from random
weights, and a SOLO head learns the object classes slowly from scratch: it reads each class at
an object's centre cell, at the object's own scale. ``train.crop_pretrain_steps`` first trains
the backbone alone as a plain classifier of the training set's objects — each one cropped by
its box with a random margin, resized to ``size`` x ``size``, global-average-pooled C5, a linear
layer, cross-entropy — then the detector trains from those weights. The linear layer is thrown
away; the crops come from the same annotations the detector learns from, so nothing outside the
training set is used.
"""

from __future__ import annotations

import collections
import logging
import math
import time
from collections.abc import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from csrinfer.data.coco import CocoInstanceDataset
from csrinfer.boxes import masks_to_boxes

log = logging.getLogger(__name__)


def object_crops(dataset: CocoInstanceDataset, size: int = 64, margin: tuple[float, float] = (0.1, 0.6),
                 seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Every object of ``dataset`` cropped by its box plus a random margin (a fraction of the box's
    longer side), resized to ``size`` x ``size``: (uint8 RGB [N, 3, size, size], int64 labels [N])."""
    rng = np.random.default_rng(seed)
    crops, labels = [], []
    for index in range(len(dataset)):
        loaded = dataset.load(index)
        if loaded is None:  # unreadable: already reported by the dataset
            continue
        image, masks, object_labels, _ = loaded
        for (x1, y1, x2, y2), label in zip(masks_to_boxes(masks.astype(bool)), object_labels):
            if x2 <= x1:  # an empty mask
                continue
            pad = rng.uniform(*margin) * max(y2 - y1, x2 - x1)
            y1, x1 = int(max(0, y1 - pad)), int(max(0, x1 - pad))
            y2, x2 = int(min(image.shape[0], y2 + pad)), int(min(image.shape[1], x2 + pad))
            crop = cv2.resize(image[y1:y2, x1:x2], (size, size), interpolation=cv2.INTER_AREA)
            crops.append(crop[:, :, ::-1].transpose(2, 0, 1))  # BGR HWC -> RGB CHW
            labels.append(int(label))
    if not crops:
        return torch.zeros((0, 3, size, size), dtype=torch.uint8), torch.zeros(0, dtype=torch.int64)
    return torch.from_numpy(np.ascontiguousarray(np.stack(crops))), torch.tensor(labels, dtype=torch.int64)


def pretrain_backbone(backbone: nn.Module, crops: torch.Tensor, labels: torch.Tensor, num_classes: int,
                      steps: int, mean: torch.Tensor, std: torch.Tensor, lr: float = 1e-3,
                      weight_decay: float = 0.05, batch_size: int = 64, device: torch.device | None = None,
                      autocast_dtype: torch.dtype | None = None, seed: int = 0, deadline: float | None = None,
                      progress: bool = False, state: dict | None = None,
                      should_stop: Callable[[], bool] | None = None) -> dict:
    """Train ``backbone`` (in place) as a classifier of ``crops`` until ``steps`` AdamW steps are
    done, with random horizontal flips, stopping early at ``deadline`` (``time.monotonic()``) or
    when ``should_stop()`` turns true (checked between steps).

    ``state``: what an earlier, interrupted call returned as ``state`` (its classifier, optimiser,
    sampling generator and step count); the warm-up then continues where it stopped, counting
    its steps towards ``steps``. Returns ``steps`` (done in all, earlier calls included),
    ``stopped`` (``"deadline"``, ``"requested"`` or None), the mean loss and accuracy of the last
    tenth of this call's steps (when it made any), and ``state``.
    """
    from tqdm import tqdm

    device = device or next(backbone.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    classifier = nn.Linear(backbone.out_channels[-1], num_classes).to(device)
    params = [p for p in backbone.parameters() if p.requires_grad] + list(classifier.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    done = 0
    if state:
        classifier.load_state_dict(state["classifier"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        done = int(state["steps"])
    mean, std = mean.to(device), std.to(device)
    backbone.train()
    tail = max(1, math.ceil((steps - done) / 10))
    losses, hits = collections.deque(maxlen=tail), collections.deque(maxlen=tail)
    stopped = None
    for _ in tqdm(range(done, steps), desc="backbone warm-up", unit="step", disable=not progress,
                  dynamic_ncols=True, initial=done, total=steps):
        if deadline is not None and time.monotonic() > deadline:
            stopped = "deadline"
            break
        if should_stop is not None and should_stop():
            stopped = "requested"
            break
        index = torch.randint(len(labels), (batch_size,), generator=generator)
        x = crops[index].to(device).float()
        if torch.rand((), generator=generator) < 0.5:
            x = x.flip(3)
        y = labels[index].to(device)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits = classifier(backbone((x - mean) / std)[-1].mean(dim=(2, 3)))
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        # kept as tensors: reading them every step would wait for the device every step
        losses.append(loss.detach())
        hits.append((logits.argmax(1) == y).float().mean())
        done += 1
    result = {"steps": done, "stopped": stopped,
              "state": {"steps": done, "classifier": classifier.state_dict(), "optimizer": optimizer.state_dict(),
                        "generator": generator.get_state()}}
    if losses:
        result.update(loss=torch.stack(list(losses)).mean().item(), accuracy=torch.stack(list(hits)).mean().item())
    return result
