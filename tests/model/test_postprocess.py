"""In-graph post-processing: Matrix NMS on hand-built masks, fixed-size padded outputs."""

from __future__ import annotations

import math

import torch

from csrinfer.model.postprocess import matrix_nms, points_nms, postprocess


def square(size=20, top=0, left=0, h=8, w=8):
    m = torch.zeros(size, size)
    m[top:top + h, left:left + w] = 1
    return m


def run_nms(masks, labels, scores, kernel="gaussian", sigma=2.0):
    flat = torch.stack(masks).flatten(1)[None]
    return matrix_nms(flat, torch.tensor([labels]), torch.tensor([scores]), flat.sum(-1), kernel, sigma)[0]


def test_near_duplicate_is_decayed_below_threshold_and_distinct_mask_keeps_its_score():
    a = square(top=2, left=2)
    near_dup = square(top=2, left=3)  # IoU 56/72
    distinct = square(top=11, left=11)
    decayed = run_nms([a, near_dup, distinct], [0, 0, 0], [0.9, 0.85, 0.8], sigma=8.0)
    iou = 56 / 72
    assert decayed[0] == torch.tensor(0.9)
    assert math.isclose(decayed[1].item(), 0.85 * math.exp(-8.0 * iou ** 2), rel_tol=1e-5)
    assert decayed[1] < 0.05
    assert math.isclose(decayed[2].item(), 0.8, rel_tol=1e-6)


def test_masks_of_other_classes_do_not_decay_each_other():
    a, b = square(top=2, left=2), square(top=2, left=3)
    decayed = run_nms([a, b], [0, 1], [0.9, 0.85])
    torch.testing.assert_close(decayed, torch.tensor([0.9, 0.85]))


def test_suppressed_mask_does_not_suppress_twice():
    # c overlaps b only; b is itself a duplicate of a, so b's decay of c is compensated.
    a, b, c = square(top=0, left=0, w=10), square(top=0, left=1, w=10), square(top=0, left=5, w=10)
    decayed = run_nms([a, b, c], [0, 0, 0], [0.9, 0.8, 0.7], kernel="linear")
    ab, ac, bc = 72 / 88, 40 / 120, 48 / 112
    want_c = 0.7 * min((1 - ac) / 1.0, (1 - bc) / (1 - ab))
    assert math.isclose(decayed[2].item(), want_c, rel_tol=1e-5)
    assert math.isclose(decayed[1].item(), 0.8 * (1 - ab), rel_tol=1e-5)


def test_points_nms_keeps_cells_not_beaten_by_their_upper_left_neighbours():
    # SOLOv2's filter: a 2x2 max pool anchored at the cell's upper-left corner.
    heat = torch.tensor([[[[0.1, 0.9, 0.2], [0.3, 0.4, 0.8], [0.95, 0.1, 0.1]]]])
    kept = points_nms(torch.logit(heat))
    assert torch.equal(kept > 0, torch.tensor([[[[True, True, False], [True, False, False], [True, False, False]]]]))
    torch.testing.assert_close(kept[kept > 0], heat[kept > 0])


def test_points_nms_does_not_tie_saturated_neighbours():
    logits = torch.tensor([[[[30.0, 31.0]]]])  # both sigmoid to 1.0 in float32
    kept = points_nms(logits)
    assert kept[0, 0, 0, 0] == 1.0 and kept[0, 0, 0, 1] == 1.0  # 31 beats 30; 30 has no upper-left rival


def hand_built_head(num_classes=3, e=4, size=16):
    """One grid of 3x3 cells; cell (0,0) predicts a square for class 1, cell (0,2) a duplicate of it."""
    g = torch.Generator().manual_seed(0)
    cate = torch.full((1, num_classes, 3, 3), -10.0)
    cate[0, 1, 0, 0] = 3.0  # p ~ 0.95
    cate[0, 1, 0, 2] = 2.0  # p ~ 0.88 (another local maximum)
    feats = torch.zeros(1, e, size, size)
    feats[0, 0, 2:10, 2:10] = 10.0  # channel 0: the square
    feats[0, 1] = torch.randn(size, size, generator=g) * 0.01
    feats[0, 0] -= 5.0  # outside the square: logit -5
    kern = torch.zeros(1, e, 3, 3)
    kern[0, 0, 0, 0] = 1.0
    kern[0, 0, 0, 2] = 1.0  # same kernel: a perfect duplicate
    return [cate], [kern], feats


def test_postprocess_drops_duplicates_and_pads_to_fixed_size():
    cate, kern, feats = hand_built_head()
    scores, labels, masks = postprocess(cate, kern, feats, grid_strides=[8], score_thr=0.1, nms_pre=9,
                                        mask_thr=0.5, nms_sigma=2.0, filter_thr=0.05, max_per_img=10)
    assert scores.shape == (1, 10) and labels.shape == (1, 10) and masks.shape == (1, 10, 16, 16)
    valid = scores[0] > 0
    assert valid.sum() == 2  # the duplicate is decayed by exp(-2), not below 0.05
    assert torch.all(labels[0, :2] == 1)
    assert scores[0, 0] > 0.9 and math.isclose(scores[0, 1].item(), scores[0, 0].item() * 0.88 / 0.95 * math.exp(-2), rel_tol=0.05)
    assert torch.all(scores[0, 2:] == 0)
    assert ((masks[0, 0] > 0.5) == (feats[0, 0] > 0)).all()


def test_postprocess_drops_masks_no_larger_than_their_stride():
    cate, kern, feats = hand_built_head()
    scores, _, _ = postprocess(cate, kern, feats, grid_strides=[64], nms_pre=9, max_per_img=10)
    assert (scores == 0).all()  # the 64-pixel square is not larger than stride 64


def test_postprocess_is_batched_independently():
    cate, kern, feats = hand_built_head()
    empty = [torch.full_like(cate[0], -10.0)]
    scores, _, _ = postprocess([torch.cat([cate[0], empty[0]])], [kern[0].repeat(2, 1, 1, 1)],
                               feats.repeat(2, 1, 1, 1), grid_strides=[8], nms_pre=9, max_per_img=10)
    single, _, _ = postprocess(cate, kern, feats, grid_strides=[8], nms_pre=9, max_per_img=10)
    torch.testing.assert_close(scores[0], single[0])
    assert (scores[1] == 0).all()
