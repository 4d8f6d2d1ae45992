"""The Eq. 6 losses against independent numpy computations on random inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from csrinfer.model.head import HeadOutputs
from csrinfer.train.losses import category_loss, dice_loss, mask_focal_loss, solo_loss
from csrinfer.train.targets import IGNORE, BatchTargets


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _focal(x, t, alpha=0.25, gamma=2.0):
    """Lin et al.'s focal loss, element-wise, written from the paper's formula."""
    p = _sigmoid(x)
    pt = p * t + (1 - p) * (1 - t)
    at = alpha * t + (1 - alpha) * (1 - t)
    ce = -(t * np.log(p) + (1 - t) * np.log(1 - p))
    return at * (1 - pt) ** gamma * ce


def test_dice_loss_matches_the_formula():
    rng = np.random.default_rng(0)
    x, t = rng.normal(size=(3, 7, 9)), (rng.random((3, 7, 9)) < 0.4).astype(np.float64)
    w = (rng.random((3, 7, 9)) < 0.8).astype(np.float64)
    p = _sigmoid(x) * w
    tw = t * w
    want = 1 - 2 * (p * tw).sum((1, 2)) / ((p ** 2).sum((1, 2)) + 1e-3 + (tw ** 2).sum((1, 2)) + 1e-3)
    got = dice_loss(torch.tensor(x), torch.tensor(t), torch.tensor(w))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)
    perfect = dice_loss(torch.full((1, 4, 4), 30.0), torch.ones(1, 4, 4))
    assert perfect.item() < 1e-3


def test_category_loss_is_focal_over_cells_and_classes_divided_by_positives_plus_one():
    rng = np.random.default_rng(1)
    preds = [rng.normal(size=(2, 3, 4, 4)), rng.normal(size=(2, 3, 2, 2))]
    labels = [rng.integers(0, 4, (2, 4, 4)), rng.integers(0, 4, (2, 2, 2))]
    labels[0][0, 0, :2] = IGNORE
    total, num_pos = 0.0, 0
    for p, lab in zip(preds, labels):
        for b in range(2):
            for i in range(p.shape[2]):
                for j in range(p.shape[3]):
                    c = lab[b, i, j]
                    if c == IGNORE:
                        continue
                    t = np.zeros(3)
                    if c < 3:
                        t[c] = 1
                        num_pos += 1
                    total += _focal(p[b, :, i, j], t).sum()
    got = category_loss([torch.tensor(p) for p in preds], [torch.tensor(lab) for lab in labels])
    assert got.item() == pytest.approx(total / (num_pos + 1), rel=1e-6)


def test_mask_focal_loss_is_the_mean_over_weighted_pixels():
    rng = np.random.default_rng(2)
    x, t = rng.normal(size=(2, 5, 6)), rng.random((2, 5, 6))  # soft targets, as the targets are
    w = (rng.random((2, 5, 6)) < 0.7).astype(np.float64)
    want = (_focal(x, t) * w).sum() / w.sum()
    got = mask_focal_loss(torch.tensor(x), torch.tensor(t), torch.tensor(w))
    assert got.item() == pytest.approx(want, rel=1e-6)


def _outputs_and_targets(num_pos: int):
    torch.manual_seed(0)
    b, c, e, h, w = 2, 3, 5, 6, 8
    outputs = HeadOutputs([torch.randn(b, c, 4, 4, requires_grad=True)], [torch.randn(b, e, 4, 4, requires_grad=True)],
                          torch.randn(b, e, h, w, requires_grad=True))
    labels = torch.full((b, 4, 4), c)
    pos_image = torch.tensor([0, 1, 1][:num_pos])
    pos_cell = torch.tensor([5, 0, 15][:num_pos])
    for bi, cell in zip(pos_image.tolist(), pos_cell.tolist()):
        labels[bi].view(-1)[cell] = 1
    masks = torch.rand(2, h, w)  # soft targets, as the stride-8 targets are
    weights = (torch.rand(2, h, w) < 0.6).float()  # 0 on ignored (crowd) pixels
    targets = BatchTargets([labels], pos_image, pos_cell, torch.tensor([0, 1, 1][:num_pos]), masks, weights)
    return outputs, targets


def test_solo_loss_weights_its_terms_and_computes_masks_by_dynamic_kernels():
    outputs, targets = _outputs_and_targets(3)
    losses = solo_loss(outputs, targets, cls_weight=1.0, dice_weight=2.0, focal_weight=3.0)
    # Independent references in numpy. The mask of a positive is its cell's kernel dotted with
    # its image's mask features.
    kernels = outputs.kernel_preds[0].detach().numpy().reshape(2, 5, 16)  # [B, E, cells]
    feats = outputs.mask_feats.detach().numpy()
    x = np.stack([np.einsum("e,ehw->hw", kernels[b, :, cell], feats[b])
                  for b, cell in zip(targets.pos_image.tolist(), targets.pos_cell.tolist())]).astype(np.float64)
    t = targets.masks.numpy()[targets.pos_instance.numpy()].astype(np.float64)
    w = targets.mask_weights.numpy()[targets.pos_instance.numpy()].astype(np.float64)
    assert 0 < w.mean() < 1  # some pixels ignored, some not
    p, tw = _sigmoid(x) * w, t * w
    dice = (1 - 2 * (p * tw).sum((1, 2)) / ((p ** 2).sum((1, 2)) + 1e-3 + (tw ** 2).sum((1, 2)) + 1e-3)).mean()
    focal = (_focal(x, t) * w).sum() / w.sum()  # mean over the pixels of non-zero weight
    cate = outputs.cate_preds[0].detach().numpy().astype(np.float64)  # [B, C, 4, 4]
    labels = targets.cate_labels[0].numpy()
    onehot = (labels[:, None] == np.arange(3)[None, :, None, None]).astype(np.float64)
    cls = _focal(cate, onehot).sum() / (3 + 1)  # 3 positive cells
    assert losses["loss_cls"].item() == pytest.approx(cls, rel=1e-5)
    assert losses["loss_dice"].item() == pytest.approx(dice, rel=1e-5)
    assert losses["loss_focal"].item() == pytest.approx(focal, rel=1e-5)
    # Eq. 6 with design.md's weights: 1 x category + 2 x dice + 3 x focal
    assert losses["loss"].item() == pytest.approx(1 * cls + 2 * dice + 3 * focal, rel=1e-5)
    assert solo_loss(outputs, targets)["loss"].item() == pytest.approx(1 * cls + 2 * dice + 3 * focal, rel=1e-5)


def test_a_cell_claimed_twice_adds_both_dice_terms_counted_as_one_cell():
    # Image 1's cell 0 is claimed by objects 1 and 2 (two pairs, one cell): mmdetection sums the
    # mask loss over the 4 pairs and divides by the 3 distinct positive cells.
    outputs, targets = _outputs_and_targets(3)
    extra = torch.rand(1, *targets.masks.shape[1:])
    targets = BatchTargets(targets.cate_labels, torch.tensor([0, 1, 1, 1]), torch.tensor([5, 0, 0, 15]),
                           torch.tensor([0, 1, 2, 1]), torch.cat([targets.masks, extra]),
                           torch.cat([targets.mask_weights, torch.ones_like(extra)]))
    losses = solo_loss(outputs, targets)
    kernels = outputs.kernel_preds[0].detach().numpy().reshape(2, 5, 16)
    feats = outputs.mask_feats.detach().numpy()
    dice = 0.0
    for b, cell, inst in [(0, 5, 0), (1, 0, 1), (1, 0, 2), (1, 15, 1)]:
        x = np.einsum("e,ehw->hw", kernels[b, :, cell], feats[b]).astype(np.float64)
        w = targets.mask_weights.numpy()[inst].astype(np.float64)
        p, t = _sigmoid(x) * w, targets.masks.numpy()[inst].astype(np.float64) * w
        dice += 1 - 2 * (p * t).sum() / ((p ** 2).sum() + 1e-3 + (t ** 2).sum() + 1e-3)
    assert losses["loss_dice"].item() == pytest.approx(dice / 3, rel=1e-5)


def test_a_batch_without_objects_still_reaches_every_branch():
    outputs, targets = _outputs_and_targets(0)
    targets.masks = targets.masks[:0]
    targets.mask_weights = targets.mask_weights[:0]
    losses = solo_loss(outputs, targets)
    assert losses["loss_dice"].item() == 0 and losses["loss_focal"].item() == 0
    losses["loss"].backward()
    assert all(t.grad is not None for t in (*outputs.cate_preds, *outputs.kernel_preds, outputs.mask_feats))
