"""In-graph post-processing: Matrix NMS on hand-built masks, fixed-size padded outputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
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
    # Both sigmoid to 1.0 in float32. On logits, 31 (left) beats 30 (right), so the right cell
    # is filtered; compared as probabilities (mmdetection) they would tie and both be kept.
    logits = torch.tensor([[[[31.0, 30.0]]]])
    assert torch.sigmoid(logits)[0, 0, 0, 0] == torch.sigmoid(logits)[0, 0, 0, 1]
    kept = points_nms(logits)
    assert kept[0, 0, 0, 0] == 1.0 and kept[0, 0, 0, 1] == 0.0


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
    scores, labels, masks = postprocess(cate, kern, feats, min_mask_areas=[512], score_thr=0.1, nms_pre=9,
                                        mask_thr=0.5, nms_sigma=2.0, filter_thr=0.05, max_per_img=10)
    assert scores.shape == (1, 10) and labels.shape == (1, 10) and masks.shape == (1, 10, 16, 16)
    valid = scores[0] > 0
    assert valid.sum() == 2  # the duplicate is decayed by exp(-2), not below 0.05
    assert torch.all(labels[0, :2] == 1)
    assert scores[0, 0] > 0.9 and math.isclose(scores[0, 1].item(), scores[0, 0].item() * 0.88 / 0.95 * math.exp(-2), rel_tol=0.05)
    assert torch.all(scores[0, 2:] == 0)
    assert ((masks[0, 0] > 0.5) == (feats[0, 0] > 0)).all()


def test_postprocess_drops_masks_no_larger_than_their_input_area():
    cate, kern, feats = hand_built_head()
    # The 8 x 8 square is 64 mask pixels, 64 x 64 = 4096 input pixels at stride 8.
    scores, _, _ = postprocess(cate, kern, feats, min_mask_areas=[4096], nms_pre=9, max_per_img=10)
    assert (scores == 0).all()
    scores, _, _ = postprocess(cate, kern, feats, min_mask_areas=[4095], nms_pre=9, max_per_img=10)
    assert (scores > 0).sum() == 2


# SOLOv2 keeps a mask with more pixels than its level's stride on its stride-4 mask branch:
# more than 16 x stride input pixels. At stride 8 a mask pixel is 64 input pixels, so the
# limit is stride / 4 of our mask pixels. Per level: (stride, mask pixels at the limit, dropped;
# one pixel more, kept). Worked by hand: 8 -> 128 px = 2 pixels; 16 -> 256 = 4; 32 -> 512 = 8.
@pytest.mark.parametrize("level,at_limit", [(0, 2), (1, 2), (2, 4), (3, 8), (4, 8)])
def test_the_small_mask_filter_keeps_solov2s_input_area_per_level(level, at_limit):
    from csrinfer.config import ModelConfig

    grids = [2] * 5
    cate = [torch.full((1, 2, s, s), -12.0, dtype=torch.float64) for s in grids]
    kern = [torch.zeros(1, 2, s, s, dtype=torch.float64) for s in grids]
    cate[level][0, 0, 0, 0] = 2.0  # cell (0, 0), class 0, predicts mask channel 0
    cate[level][0, 1, 1, 1] = 2.0  # cell (1, 1), class 1, predicts mask channel 1
    kern[level][0, 0, 0, 0] = 1.0
    kern[level][0, 1, 1, 1] = 1.0
    feats = torch.full((1, 2, 16, 16), -12.0, dtype=torch.float64)
    feats[0, 0, 2, 2:2 + at_limit + 1] = 12.0  # one pixel above the limit
    feats[0, 1, 10, 2:2 + at_limit] = 12.0  # exactly at the limit: "no more than" is dropped
    scores, labels, masks = postprocess(cate, kern, feats, ModelConfig().min_mask_input_area, nms_pre=20,
                                        max_per_img=5, mask_stride=8)
    assert (scores[0] > 0).sum() == 1
    assert labels[0, 0] == 0 and (masks[0, 0] > 0.5).sum() == at_limit + 1


def test_postprocess_is_batched_independently():
    cate, kern, feats = hand_built_head()
    empty = [torch.full_like(cate[0], -10.0)]
    scores, _, _ = postprocess([torch.cat([cate[0], empty[0]])], [kern[0].repeat(2, 1, 1, 1)],
                               feats.repeat(2, 1, 1, 1), min_mask_areas=[512], nms_pre=9, max_per_img=10)
    single, _, _ = postprocess(cate, kern, feats, min_mask_areas=[512], nms_pre=9, max_per_img=10)
    torch.testing.assert_close(scores[0], single[0])
    assert (scores[1] == 0).all()


# -- The whole inference against a plain-Python reference written as loops, in the order the
# module docstring gives (SOLOv2's ``_get_results_single``, with the TopK ``nms_pre`` taken on
# the raw category scores so the graph keeps fixed sizes).

def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def reference_postprocess(cate, kern, feats, min_areas, score_thr, nms_pre, mask_thr, sigma, filter_thr, max_per_img,
                          mask_stride=8):
    """One image. cate: list of [C, S, S] logits; kern: list of [E, S, S]; feats: [E, H, W].
    Returns scores [K], labels [K], masks [K, H, W] (zero-padded) as numpy."""
    cell_kernel, cell_min_area, cands = [], [], []
    for logits, kernels, min_area in zip(cate, kern, min_areas):
        num_classes, s, _ = logits.shape
        for y in range(s):
            for x in range(s):
                cell = len(cell_kernel)
                cell_kernel.append(kernels[:, y, x])
                cell_min_area.append(min_area)
                for c in range(num_classes):
                    # points NMS: kept if no cell of the 2x2 window ending here beats it
                    window = [logits[c, yy, xx] for yy in (y - 1, y) for xx in (x - 1, x) if yy >= 0 and xx >= 0]
                    score = sigmoid(logits[c, y, x]) if logits[c, y, x] >= max(window) else 0.0
                    cands.append((score, cell, c))
    cands = sorted(cands, key=lambda t: -t[0])[:nms_pre]

    kept = []
    for score, cell, label in cands:
        if not score > score_thr:
            continue
        prob = sigmoid(sum(cell_kernel[cell][e] * feats[e] for e in range(feats.shape[0])))
        binary = prob > mask_thr
        area = binary.sum()
        if not area * mask_stride ** 2 > cell_min_area[cell]:  # in pixels of the input
            continue
        maskness = prob[binary].sum() / area
        kept.append(dict(score=score * maskness, label=label, prob=prob, binary=binary, area=area))
    kept.sort(key=lambda d: -d["score"])

    def iou(a, b):
        inter = np.logical_and(a["binary"], b["binary"]).sum()
        return inter / (a["area"] + b["area"] - inter)

    # Matrix NMS (gaussian): decay by each higher same-class mask, compensated by how much that
    # mask was itself suppressed.
    compensate = [max([iou(kept[k], kept[i]) for k in range(i) if kept[k]["label"] == kept[i]["label"]], default=0.0)
                  for i in range(len(kept))]
    final = []
    for j, b in enumerate(kept):
        decay = 1.0
        for i in range(j):
            if kept[i]["label"] == b["label"]:
                decay = min(decay, np.exp(-sigma * iou(kept[i], b) ** 2) / np.exp(-sigma * compensate[i] ** 2))
        if b["score"] * decay >= filter_thr:
            final.append((b["score"] * decay, b["label"], b["prob"]))
    final = sorted(final, key=lambda t: -t[0])[:max_per_img]

    h, w = feats.shape[1:]
    scores, labels, masks = np.zeros(max_per_img), np.zeros(max_per_img, dtype=np.int64), np.zeros((max_per_img, h, w))
    for k, (s, label, prob) in enumerate(final):
        scores[k], labels[k], masks[k] = s, label, prob
    return scores, labels, masks


# Two regimes of random category logits, uniform in [low, high]:
# busy: scores 0.02-0.88, more survivors than K, so the final TopK cut matters;
# sparse: scores 0.004-0.18 with 3-d kernels (masks overlap more): in the top nms_pre some
# candidates sit under score_thr and some are decayed under filter_thr.
REGIMES = {"busy": (-4.0, 2.0, 5), "sparse": (-5.5, -1.5, 3)}


def random_head(seed, low, high, e, batch=2, num_classes=3, grids=(4, 3), h=8, w=10):
    g = torch.Generator().manual_seed(seed)
    cate = [torch.rand(batch, num_classes, s, s, generator=g, dtype=torch.float64) * (high - low) + low for s in grids]
    kern = [torch.randn(batch, e, s, s, generator=g, dtype=torch.float64) for s in grids]
    feats = torch.randn(batch, e, h, w, generator=g, dtype=torch.float64) * 3.0  # confident masks
    return cate, kern, feats


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("nms_pre,max_per_img", [(12, 10), (6, 10)])
@pytest.mark.parametrize("regime", sorted(REGIMES))
def test_postprocess_matches_a_loop_reference_slot_by_slot(regime, seed, nms_pre, max_per_img):
    cate, kern, feats = random_head(seed, *REGIMES[regime])
    min_areas = (512, 2560)  # input pixels: 8 and 40 mask pixels; the coarse grid's ~40-pixel masks often fail it
    kwargs = dict(score_thr=0.1, nms_pre=nms_pre, mask_thr=0.5, filter_thr=0.05, max_per_img=max_per_img)
    scores, labels, masks = postprocess(cate, kern, feats, min_areas, nms_sigma=2.0, **kwargs)
    assert scores.shape == (2, max_per_img) and labels.shape == (2, max_per_img)
    assert masks.shape == (2, max_per_img, 8, 10) and labels.dtype == torch.int64
    for b in range(2):
        want_s, want_l, want_m = reference_postprocess(
            [c[b].numpy() for c in cate], [k[b].numpy() for k in kern], feats[b].numpy(), min_areas,
            sigma=2.0, **kwargs)
        n = int((want_s > 0).sum())
        assert n > 0
        np.testing.assert_allclose(scores[b].numpy(), want_s, rtol=1e-9, atol=1e-12)  # padded slots 0 too
        np.testing.assert_array_equal(labels[b, :n].numpy(), want_l[:n])
        np.testing.assert_allclose(masks[b, :n].numpy(), want_m[:n], rtol=1e-9, atol=1e-12)


def square_logits(h, w, top, left, size, inside=12.0):
    m = torch.full((h, w), -inside, dtype=torch.float64)
    m[top:top + size, left:left + size] = inside
    return m


def two_cell_head(score_a, score_b, label_b, square_b):
    """A 3x3 grid: cell (0,0) of class 0 predicts square A; cell (2,2) of class ``label_b``
    predicts ``square_b``; every other score is ~0. Mask features: channel e is square e."""
    cate = torch.full((1, 2, 3, 3), -12.0, dtype=torch.float64)
    cate[0, 0, 0, 0] = math.log(score_a / (1 - score_a))
    cate[0, label_b, 2, 2] = math.log(score_b / (1 - score_b))
    kern = torch.zeros(1, 2, 3, 3, dtype=torch.float64)
    kern[0, 0, 0, 0] = 1.0
    kern[0, 1, 2, 2] = 1.0
    feats = torch.stack([square_logits(16, 16, 2, 2, 8), square_logits(16, 16, *square_b, 8)])[None]
    return [cate], [kern], feats


def maskness_of_square(inside=12.0):
    return 1.0 / (1.0 + math.exp(-inside))  # every pixel inside has this probability


def test_candidate_under_score_thr_is_dropped_even_with_a_perfect_mask():
    cate, kern, feats = two_cell_head(score_a=0.12, score_b=0.09, label_b=1, square_b=(10, 10))
    scores, labels, masks = postprocess(cate, kern, feats, min_mask_areas=[512], score_thr=0.1, nms_pre=18,
                                        filter_thr=0.05, max_per_img=5)
    assert math.isclose(scores[0, 0].item(), 0.12 * maskness_of_square(), rel_tol=1e-9)
    assert labels[0, 0] == 0
    assert torch.equal(masks[0, 0] > 0.5, feats[0, 0] > 0)
    assert (scores[0, 1:] == 0).all()  # 0.09 * ~1 would pass filter_thr 0.05, but not score_thr


def test_near_duplicate_decayed_under_filter_thr_is_dropped():
    # B is A moved one column: IoU 56/72, gaussian decay exp(-2 * iou^2) ~ 0.30, so B's
    # 0.15 * maskness falls to ~0.045 < filter_thr 0.05 (it was above 0.05 before the decay).
    cate, kern, feats = two_cell_head(score_a=0.8, score_b=0.15, label_b=0, square_b=(2, 3))
    decayed_b = 0.15 * maskness_of_square() * math.exp(-2.0 * (56 / 72) ** 2)
    assert 0.04 < decayed_b < 0.05
    common = dict(min_mask_areas=[512], score_thr=0.1, nms_pre=18, nms_sigma=2.0, max_per_img=5)
    scores, labels, _ = postprocess(cate, kern, feats, filter_thr=0.05, **common)
    assert math.isclose(scores[0, 0].item(), 0.8 * maskness_of_square(), rel_tol=1e-9)
    assert (scores[0, 1:] == 0).all()
    # The same head with filter_thr 0.04 keeps B at exactly its decayed score.
    scores, labels, masks = postprocess(cate, kern, feats, filter_thr=0.04, **common)
    assert math.isclose(scores[0, 1].item(), decayed_b, rel_tol=1e-9)
    assert labels[0, 1] == 0 and torch.equal(masks[0, 1] > 0.5, feats[0, 1] > 0)
    assert (scores[0, 2:] == 0).all()
