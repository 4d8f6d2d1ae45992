"""SOLOv2 target assignment on the grids of the single stride-8 feature (design.md §1).

Follows mmdetection 3.3's ``SOLOv2Head._get_targets_single`` except where listed below.
Each object goes to every grid whose scale range holds sqrt(w * h) of its box (the ranges
overlap, as SOLOv2's FPN levels do). On such an S x S grid, the cells of its centre region are
positive: the region is centred on the mask's centre of mass (on pixel indices: pixel i is at
i, as mmdetection's ``center_of_mass``) with half-extents ``pos_scale`` x half the box, and
clipped to the 3 x 3 cells around the centre cell. A positive cell learns the object's class
and, through its dynamic kernel, the object's mask at stride 8.

A cell claimed by several objects takes the class of the last one (in annotation order) and
trains its kernel on the mask of *each* object that claims it: the targets hold one positive
per (cell, object) pair, as mmdetection's. The loss sums the mask terms of all pairs and divides
by the number of distinct positive cells (``csrinfer.train.losses``), as mmdetection's does.

Departures, both about the ignore map and soft edges:
- crowd (``iscrowd``) regions are ignored: a negative cell whose area is mostly crowd has no
  category loss, and crowd pixels outside an object's own mask have no mask loss;
- mask targets are the fraction of each 8 x 8 block the object covers, so the stride-8 target
  keeps where the edge runs inside the block (mmdetection rescales the binary mask).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from csrinfer.data.coco import collate

IGNORE = -1  # category label of a cell left out of the loss


@dataclass
class BatchTargets:
    """Targets of a batch, in the layout of the head's outputs.

    cate_labels: per grid, int64 [B, S, S]: 0..C-1 on positive cells, C (the number of classes)
        for background, ``IGNORE`` for cells left out.
    pos_image, pos_cell: int64 [P]: the image and the cell of each positive (cell, object)
        pair; cells are numbered over the grids concatenated in order (row-major within a
        grid), as the head's outputs flattened and concatenated. A cell claimed by two objects
        appears twice.
    pos_instance: int64 [P] index into ``masks``: the object of each pair.
    masks: float [M, H/8, W/8] soft mask targets of every object of the batch.
    mask_weights: float [M, H/8, W/8], 0 on ignored pixels.
    """

    cate_labels: list[torch.Tensor]
    pos_image: torch.Tensor
    pos_cell: torch.Tensor
    pos_instance: torch.Tensor
    masks: torch.Tensor
    mask_weights: torch.Tensor

    @property
    def num_pos(self) -> int:
        """Positive (cell, object) pairs."""
        return int(self.pos_cell.numel())

    @property
    def num_pos_cells(self) -> int:
        """Distinct positive cells (a cell claimed by two objects counts once)."""
        if not self.num_pos:
            return 0
        key = self.pos_image * (int(self.pos_cell.max()) + 1) + self.pos_cell
        return int(torch.unique(key).numel())


def center_of_mass(mask: torch.Tensor) -> tuple[float, float]:
    """(y, x) centre of mass of a [H, W] mask on pixel indices (pixel i counts as i, not as its
    centre i + 0.5), as mmdetection's SOLOv2 places its centre cells."""
    m = mask.float()
    total = m.sum().clamp(min=1e-6)
    ys = torch.arange(m.shape[0], dtype=torch.float32)
    xs = torch.arange(m.shape[1], dtype=torch.float32)
    return float((m.sum(dim=1) * ys).sum() / total), float((m.sum(dim=0) * xs).sum() / total)


def tight_box(mask: torch.Tensor) -> tuple[float, float, float, float]:
    """(x1, y1, x2, y2) of a non-empty [H, W] mask, x2/y2 exclusive."""
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


def centre_cells(cy: float, cx: float, half_h: float, half_w: float, height: int, width: int,
                 num_grid: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) inclusive cell range of an object's centre region on an S x S
    grid covering a ``height`` x ``width`` input."""
    def cell(v: float, size: int) -> int:
        return int(math.floor(v / size * num_grid))

    ch, cw = min(cell(cy, height), num_grid - 1), min(cell(cx, width), num_grid - 1)
    top = max(0, cell(cy - half_h, height), ch - 1)
    bottom = min(num_grid - 1, cell(cy + half_h, height), ch + 1)
    left = max(0, cell(cx - half_w, width), cw - 1)
    right = min(num_grid - 1, cell(cx + half_w, width), cw + 1)
    return top, bottom, left, right


def image_targets(masks: torch.Tensor, labels: torch.Tensor, ignore: torch.Tensor | None, num_classes: int,
                  num_grids: Sequence[int], scale_ranges: Sequence[Sequence[float]], pos_scale: float = 0.2,
                  stride: int = 8):
    """Targets of one image.

    Args:
        masks: uint8/bool [N, H, W] at the network input size (padded, multiples of ``stride``).
        labels: int64 [N].
        ignore: bool [H, W] crowd map, or None.
    Returns:
        (cate_labels: list of int64 [S, S], pos_cell: int64 [P] and pos_instance: int64 [P], one
         entry per (cell, object) pair,
         mask targets float [N, H/stride, W/stride], mask weights float [N, H/stride, W/stride]).
    """
    n, height, width = masks.shape
    cate_labels, pos_cell, pos_instance = [], [], []
    offset = 0
    geometry = []
    for i in range(n):
        if masks[i].any():
            x1, y1, x2, y2 = tight_box(masks[i])
            geometry.append((i, math.sqrt((x2 - x1) * (y2 - y1)), center_of_mass(masks[i]),
                             0.5 * (y2 - y1) * pos_scale, 0.5 * (x2 - x1) * pos_scale))
    for num_grid, (lower, upper) in zip(num_grids, scale_ranges):
        grid_labels = torch.full((num_grid, num_grid), num_classes, dtype=torch.int64)
        claimed = torch.zeros((num_grid, num_grid), dtype=torch.bool)
        for i, scale, (cy, cx), half_h, half_w in geometry:
            if lower <= scale <= upper:
                top, bottom, left, right = centre_cells(cy, cx, half_h, half_w, height, width, num_grid)
                grid_labels[top:bottom + 1, left:right + 1] = labels[i]  # the last claim sets the class
                claimed[top:bottom + 1, left:right + 1] = True
                cells = [r * num_grid + c for r in range(top, bottom + 1) for c in range(left, right + 1)]
                pos_cell.append(torch.tensor(cells, dtype=torch.int64) + offset)
                pos_instance.append(torch.full((len(cells),), i, dtype=torch.int64))
        if ignore is not None and ignore.any():
            crowd = F.adaptive_avg_pool2d(ignore[None, None].float(), num_grid)[0, 0]
            grid_labels[(crowd > 0.5) & ~claimed] = IGNORE
        cate_labels.append(grid_labels)
        offset += num_grid * num_grid
    soft = F.avg_pool2d(masks[:, None].float(), stride)[:, 0] if n else masks.new_zeros(
        (0, height // stride, width // stride), dtype=torch.float32)
    weights = torch.ones_like(soft)
    if ignore is not None and ignore.any():
        crowd = F.avg_pool2d(ignore[None, None].float(), stride)[0]  # [1, h, w]
        weights[(crowd >= 0.5).expand_as(soft) & (soft < 0.5)] = 0.0
    empty = torch.zeros(0, dtype=torch.int64)
    return cate_labels, torch.cat([empty, *pos_cell]), torch.cat([empty, *pos_instance]), soft, weights


def batch_targets(masks: Sequence[torch.Tensor], labels: Sequence[torch.Tensor],
                  ignores: Sequence[torch.Tensor | None], num_classes: int, num_grids: Sequence[int],
                  scale_ranges: Sequence[Sequence[float]], pos_scale: float = 0.2, stride: int = 8) -> BatchTargets:
    """:func:`image_targets` of each image, gathered into one :class:`BatchTargets`."""
    per_image = [image_targets(m, l, ig, num_classes, num_grids, scale_ranges, pos_scale, stride)
                 for m, l, ig in zip(masks, labels, ignores)]
    cate = [torch.stack([t[0][g] for t in per_image]) for g in range(len(num_grids))]
    pos_image, pos_instance, offset = [], [], 0
    for b, t in enumerate(per_image):
        pos_image.append(torch.full_like(t[1], b))
        pos_instance.append(t[2] + offset)
        offset += t[3].shape[0]
    return BatchTargets(cate, torch.cat(pos_image), torch.cat([t[1] for t in per_image]), torch.cat(pos_instance),
                        torch.cat([t[3] for t in per_image]), torch.cat([t[4] for t in per_image]))


class TrainCollate:
    """DataLoader ``collate_fn`` for training: stacks samples (:func:`csrinfer.data.coco.collate`)
    and assigns targets, in the loader's worker processes."""

    def __init__(self, num_classes: int, num_grids: Sequence[int], scale_ranges: Sequence[Sequence[float]],
                 pos_scale: float = 0.2, stride: int = 8, divisor: int = 32):
        self.num_classes, self.num_grids, self.scale_ranges = num_classes, list(num_grids), list(scale_ranges)
        self.pos_scale, self.stride, self.divisor = pos_scale, stride, divisor

    def __call__(self, samples):
        batch = collate(samples, self.divisor)
        batch.targets = batch_targets(batch.masks, batch.labels, batch.ignores, self.num_classes,
                                      self.num_grids, self.scale_ranges, self.pos_scale, self.stride)
        return batch
