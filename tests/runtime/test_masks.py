"""Masks as the network made them: every form read from ``LazyMasks`` is the full-size mask's own,
bit for bit (design.md §2, "Results are cheap until read")."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from csrinfer.runtime.masks import RLEMasks, crop_counts, encode_counts
from csrinfer.runtime.postprocess import to_instances
from csrinfer.letterbox import Letterbox, padded_size, resized_size


def letterbox_of(h: int, w: int) -> Letterbox:
    rh, rw = resized_size(h, w)
    return Letterbox((h, w), (rh, rw), padded_size(rh, rw))


def blob_probs(n: int, box: Letterbox, seed: int) -> np.ndarray:
    """float32 [n, Hp/8, Wp/8]: smooth object-like probabilities, some masks empty, some large."""
    rng = np.random.default_rng(seed)
    hs, ws = box.padded[0] // 8, box.padded[1] // 8
    coarse = torch.from_numpy(rng.random((n, hs // 4 + 1, ws // 4 + 1)).astype(np.float32))
    probs = F.interpolate(coarse[None], size=(hs, ws), mode="bilinear")[0].numpy()
    return (probs * rng.uniform(0.3, 1.3, (n, 1, 1))).astype(np.float32)


def reference_masks(probs: np.ndarray, box: Letterbox, thr: float = 0.5) -> np.ndarray:
    """Written apart from csrinfer: each axis' upsample-crop-resize as a matrix, made by
    interpolating the identity, one mask at a time."""
    def matrix(size, padded, kept, out):
        eye = torch.eye(size)[None]
        up = F.interpolate(eye, size=padded, mode="linear", align_corners=False)[..., :kept]
        return F.interpolate(up, size=out, mode="linear", align_corners=False)[0].T.contiguous()

    rows = matrix(probs.shape[1], box.padded[0], box.resized[0], box.original[0])
    cols = matrix(probs.shape[2], box.padded[1], box.resized[1], box.original[1])
    out = np.zeros((len(probs), *box.original), bool)
    for i, p in enumerate(probs):
        out[i] = (torch.matmul(rows, torch.matmul(torch.from_numpy(p)[None], cols.T))[0] > thr).numpy()
    return out


def tight_boxes(masks: np.ndarray) -> np.ndarray:
    boxes = np.zeros((len(masks), 4), np.float32)
    for i, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        if ys.size:
            boxes[i] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return boxes


def pycocotools_counts(masks: np.ndarray) -> list[bytes]:
    from pycocotools import mask as mask_utils

    return [r["counts"] for r in mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))]


@pytest.mark.parametrize("storage", ["numpy", "torch"])
@pytest.mark.parametrize("h,w,n", [(480, 640, 12), (37, 53, 100), (301, 199, 100), (1201, 799, 6)])
def test_every_form_is_the_full_size_mask_bit_for_bit(storage, h, w, n):
    box = letterbox_of(h, w)
    probs = blob_probs(n, box, seed=h + w)
    scores = np.linspace(0.9, 0.2, n).astype(np.float32)
    given = probs if storage == "numpy" else torch.from_numpy(probs)
    inst = to_instances(scores, np.zeros(n, np.int64), given, box)
    want = reference_masks(probs, box)
    assert len(inst) == n and type(inst.mask_store.probs) is type(given)
    np.testing.assert_array_equal(inst.boxes, tight_boxes(want))  # made at once, before any mask
    assert inst._masks is None
    for i in (0, n // 2, n - 1):
        np.testing.assert_array_equal(inst.mask(i), want[i])
    for crop, (x1, y1, x2, y2), mask in zip(inst.crops(), inst.boxes.astype(int), want):
        pasted = np.zeros_like(mask)
        pasted[y1:y2, x1:x2] = crop
        np.testing.assert_array_equal(pasted, mask)
    assert [r["counts"] for r in inst.rle()] == pycocotools_counts(want)
    assert all(r["size"] == [h, w] for r in inst.rle())
    np.testing.assert_array_equal(inst.masks, want)
    picked = inst[np.arange(n) % 3 == 1]
    np.testing.assert_array_equal(picked.masks, want[1::3])
    np.testing.assert_array_equal(np.stack([one.masks[0] for one in inst][:3]), want[:3])


def edge_case_probs(kind: str, n: int, box: Letterbox, seed: int) -> np.ndarray:
    """``noise``: an untrained model's masks (every cell random, above the threshold all over);
    ``sparse``: a few isolated cells above it; ``at_threshold``: plateaus of cells at exactly the
    threshold, with single cells a hair above it (pixels no float32 product can settle alone)."""
    rng = np.random.default_rng(seed)
    hs, ws = box.padded[0] // 8, box.padded[1] // 8
    if kind == "noise":
        return (rng.random((n, hs, ws)) * rng.uniform(0.55, 1.2, (n, 1, 1))).astype(np.float32)
    probs = np.zeros((n, hs, ws), np.float32)
    for p in probs:
        y, x = rng.integers(0, hs - 4), rng.integers(0, ws - 4)
        if kind == "sparse":
            p[rng.integers(0, hs, 3), rng.integers(0, ws, 3)] = rng.uniform(0.6, 1.0, 3)
        else:
            p[y:y + 4, x:x + 4] = 0.5
            p[y + 1, x + rng.integers(0, 4)] = np.nextafter(np.float32(0.5), np.float32(1))
    return probs


@pytest.mark.parametrize("kind", ["noise", "sparse", "at_threshold"])
def test_boxes_of_noisy_sparse_and_threshold_masks_are_the_full_masks(kind, monkeypatch):
    from csrinfer.runtime.masks import LazyMasks

    box = letterbox_of(237, 331)
    probs = edge_case_probs(kind, 40, box, seed=7)
    full_pastes = []
    original = LazyMasks.mask
    monkeypatch.setattr(LazyMasks, "mask", lambda self, i: full_pastes.append(i) or original(self, i))
    inst = to_instances(np.linspace(0.9, 0.2, 40).astype(np.float32), np.zeros(40, np.int64), probs, box)
    want = reference_masks(probs, box)
    assert want.any(axis=(1, 2)).sum() >= 20  # most masks have pixels to box
    np.testing.assert_array_equal(inst.boxes, tight_boxes(want))
    # an edge resting on a pixel at the threshold is settled by that mask's full-size paste, and only then
    assert (len(full_pastes) > 0) == (kind == "at_threshold")


def test_no_instances_give_empty_forms():
    box = letterbox_of(37, 53)
    inst = to_instances(np.zeros(5, np.float32), np.zeros(5), blob_probs(5, box, 0), box)
    assert len(inst) == 0 and inst.masks.shape == (0, 37, 53) and inst.rle() == [] and inst.crops() == []


def test_run_lengths_equal_pycocotools_on_random_masks():
    rng = np.random.default_rng(7)
    for _ in range(300):
        h, w = rng.integers(1, 12, 2)
        mask = rng.random((h, w)) > rng.random()
        ys, xs = np.nonzero(mask)
        y0, x0 = (ys.min(), xs.min()) if ys.size else (0, 0)
        y1, x1 = (ys.max() + 1, xs.max() + 1) if ys.size else (0, 0)
        got = encode_counts(crop_counts(mask[y0:y1, x0:x1], y0, x0, h, w))
        assert got == pycocotools_counts(mask[None])[0], mask.astype(int)


def test_rle_masks_decode_only_when_read():
    rng = np.random.default_rng(3)
    masks = rng.random((4, 9, 13)) > 0.5
    store = RLEMasks(pycocotools_counts(masks), (9, 13))
    np.testing.assert_array_equal(store.full(), masks)
    np.testing.assert_array_equal(store.select(np.array([False, True, False, True])).full(), masks[[1, 3]])


def test_polygons_outline_each_mask():
    import cv2

    box = letterbox_of(120, 160)
    inst = to_instances(np.linspace(0.9, 0.2, 8).astype(np.float32), np.zeros(8), blob_probs(8, box, 5), box)
    for polys, mask in zip(inst.polygons(), inst.masks):
        filled = np.zeros(mask.shape, np.uint8)
        cv2.drawContours(filled, [p.reshape(-1, 1, 2) for p in polys], -1, 1, thickness=cv2.FILLED)
        assert not (mask & ~filled.astype(bool)).any()  # every mask pixel is inside its outline


def test_class_agnostic_matrix_nms_decays_a_mask_kept_again_for_another_class():
    box = letterbox_of(64, 64)
    probs = blob_probs(3, box, 1)
    probs[1] = probs[0]  # the same object scored for a second class
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    labels = np.array([0, 1, 2])
    plain = to_instances(scores, labels, probs, box)
    merged = to_instances(scores, labels, probs, box, agnostic_nms=True)
    assert plain.labels.tolist() == [0, 1, 2]
    assert merged.labels[0] == 0 and merged.scores[0] == pytest.approx(0.9)
    # IoU 1 with a higher-scored mask: gaussian decay exp(-sigma * 1^2), sigma 2
    assert merged.scores[merged.labels == 1][0] == pytest.approx(0.8 * np.exp(-2.0), rel=1e-5)
    np.testing.assert_array_equal(merged.masks[0], plain.masks[0])


MEMORY_SCRIPT = textwrap.dedent("""
    import resource, sys, numpy as np
    from csrinfer.runtime.postprocess import to_instances
    from csrinfer.letterbox import Letterbox
    h, w, n = 4000, 6000, 100
    box = Letterbox((h, w), (800, 1200), (800, 1216))
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:100, 0:152]
    probs = np.stack([np.exp(-((yy - rng.integers(0, 100)) ** 2 + (xx - rng.integers(0, 152)) ** 2)
                             / (2.0 * rng.integers(1, 4) ** 2)) for _ in range(n)]).astype(np.float32)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    inst = to_instances(np.linspace(0.9, 0.2, n).astype(np.float32), np.zeros(n), probs, box)
    inst.boxes, inst.scores, inst.rle()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(len(inst), inst.mask_store.nbytes / 2**20, peak - before)
""")


def test_boxes_and_rle_of_100_masks_on_a_large_image_make_no_full_size_buffer():
    # 100 full-size bool masks of a 4000x6000 image would be 2.3 GB; reading boxes, scores and
    # RLE may grow the peak by a few full-size float images at most (one mask at a time).
    out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT], capture_output=True, text=True, timeout=600, check=True)
    n, held_mb, grown_mb = out.stdout.split()
    assert int(n) == 100 and float(held_mb) <= 15
    assert float(grown_mb) < 500, out.stdout


def test_100_masks_at_1344x800_hold_at_most_15_mb_until_read():
    box = Letterbox((800, 1344), (800, 1344), (800, 1344))
    probs = np.zeros((100, 100, 168), np.float32)
    probs[:, 40:60, 70:90] = 0.9
    inst = to_instances(np.linspace(0.9, 0.2, 100).astype(np.float32), np.zeros(100), probs, box)
    assert inst._masks is None and inst.mask_store.nbytes <= 15 * 2**20
    assert inst.boxes.tolist()[0] == pytest.approx([70 * 8 - 4, 40 * 8 - 4, 90 * 8 + 4, 60 * 8 + 4], abs=8)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (CUDA)")
def test_on_a_gpu_boxes_crops_and_rle_are_cut_from_its_own_masks():
    box = letterbox_of(301, 199)
    probs = torch.from_numpy(blob_probs(30, box, 2)).cuda()
    inst = to_instances(torch.linspace(0.9, 0.2, 30).cuda(), torch.zeros(30).cuda(), probs, box)
    masks = inst[np.arange(30)].masks  # a copy's masks: the original's stay unread
    np.testing.assert_array_equal(inst.boxes, tight_boxes(masks))
    assert [r["counts"] for r in inst.rle()] == pycocotools_counts(masks)
    for crop, (x1, y1, x2, y2), mask in zip(inst.crops(), inst.boxes.astype(int), masks):
        np.testing.assert_array_equal(crop, mask[y1:y2, x1:x2])
    np.testing.assert_array_equal(inst.mask(4), masks[4])
