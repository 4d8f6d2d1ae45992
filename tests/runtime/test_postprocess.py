"""Shared post-processing: crop padding, upsample kept masks only, threshold, boxes."""

from __future__ import annotations

import numpy as np
import pytest

from csrinfer.runtime.instances import Instances, masks_to_boxes
from csrinfer.runtime.postprocess import to_instances
from csrinfer.runtime.preprocess import Letterbox


def test_masks_return_to_the_original_image_and_padding_is_cropped():
    # Input 64x96 padded, image resized to 64x80 from an original 32x40; one square object.
    box = Letterbox(original=(32, 40), resized=(64, 80), padded=(64, 96))
    probs = np.zeros((3, 8, 12), np.float32)
    probs[0, 2:6, 2:6] = 1.0  # stride-8 cells -> pixels 16..48 of the input -> 8..24 of the original
    probs[1, :, 10:] = 1.0  # only in the padding
    scores = np.array([0.9, 0.8, 0.05], np.float32)
    inst = to_instances(scores, np.array([2, 1, 0]), probs, box, ["a", "b", "c"], score_thr=0.1)
    assert len(inst) == 2 and inst.masks.shape == (2, 32, 40)
    assert inst.names == ["c", "b"]
    ys, xs = np.nonzero(inst.masks[0])
    assert 7 <= ys.min() <= 9 and 23 <= ys.max() <= 25 and 7 <= xs.min() <= 9 and 23 <= xs.max() <= 25
    assert not inst.masks[1].any()  # what was only in the padding is gone


def test_nothing_above_threshold_gives_empty_instances():
    box = Letterbox((10, 20), (32, 64), (32, 64))
    inst = to_instances(np.zeros(5), np.zeros(5), np.ones((5, 4, 8)), box, ["x"])
    assert len(inst) == 0 and inst.masks.shape == (0, 10, 20) and inst.boxes.shape == (0, 4)


def test_by_default_only_the_graphs_empty_slots_are_dropped():
    """The graph's own thresholds already ran (decayed scores under 0.05 became 0): an instance
    scoring 0.07 is the model's answer, as in mmdetection's SOLOv2 results."""
    box = Letterbox((16, 16), (16, 16), (16, 16))
    inst = to_instances(np.array([0.9, 0.07, 0.0]), np.zeros(3), np.ones((3, 2, 2)), box, ["x"])
    np.testing.assert_allclose(inst.scores, [0.9, 0.07])


def test_boxes_are_tight_and_exclusive():
    masks = np.zeros((3, 10, 10), bool)
    masks[0, 2:5, 3:7] = True
    masks[1, 9, 9] = True
    np.testing.assert_array_equal(masks_to_boxes(masks), [[3, 2, 7, 5], [9, 9, 10, 10], [0, 0, 0, 0]])


def test_indexing_and_len():
    masks = np.zeros((3, 4, 4), bool)
    inst = Instances(masks, np.array([0, 1, 2]), np.array([0.9, 0.5, 0.2], np.float32), np.zeros((3, 4), np.float32),
                     ("a", "b", "c"))
    assert len(inst) == 3 and len(inst[1:]) == 2 and inst[1].names == ["b"] and inst[inst.scores > 0.4].names == ["a", "b"]


def test_to_coco_round_trips_through_pycocotools():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(3)
    masks = rng.random((2, 17, 23)) > 0.6
    inst = Instances(masks, np.array([0, 2]), np.array([0.9, 0.3], np.float32), masks_to_boxes(masks), ("a", "b", "c"))
    entries = inst.to_coco(image_id=7, category_ids=[10, 20, 30])
    assert [e["category_id"] for e in entries] == [10, 30] and all(e["image_id"] == 7 for e in entries)
    for e, m in zip(entries, masks):
        rle = {"size": e["segmentation"]["size"], "counts": e["segmentation"]["counts"].encode()}
        np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), m)
        assert e["bbox"] == pytest.approx(mask_utils.toBbox(rle).tolist())  # COCO's x, y, w, h


def test_to_coco_writes_the_models_own_category_ids_unless_given_others():
    rng = np.random.default_rng(4)
    masks = rng.random((3, 9, 11)) > 0.5
    inst = Instances(masks, np.array([2, 0, 1]), np.array([0.9, 0.5, 0.3], np.float32), masks_to_boxes(masks),
                     ("mug", "cat", "person"), category_ids=(3, 7, 12))
    assert [e["category_id"] for e in inst.to_coco(image_id=1)] == [12, 3, 7]
    assert [e["category_id"] for e in inst[1:].to_coco(image_id=1)] == [3, 7]  # indexing keeps them
    assert [e["category_id"] for e in inst.to_coco(image_id=1, category_ids=[5, 6, 8])] == [8, 5, 6]
    inst.category_ids = None  # a model file exported before ids were recorded
    assert [e["category_id"] for e in inst.to_coco(image_id=1)] == [3, 1, 2]


def test_to_coco_refuses_fewer_category_ids_than_classes_even_without_instances():
    import pytest

    from csrinfer.errors import ConfigError

    empty = Instances(np.zeros((0, 4, 4), bool), np.zeros(0, np.int64), np.zeros(0, np.float32),
                      np.zeros((0, 4)), ("a", "b", "c"))
    with pytest.raises(ConfigError, match="category_ids has 2 ids for 3 classes"):
        empty.to_coco(image_id=1, category_ids=[10, 20])


def test_pasting_equals_two_bilinear_resizes_and_a_crop():
    """The per-axis matrices reproduce mmdetection's upsample -> crop -> resize -> threshold."""
    import torch
    import torch.nn.functional as F

    from csrinfer.runtime.postprocess import paste_masks

    probs = torch.rand(5, 12, 20, generator=torch.Generator().manual_seed(0))
    for box in [Letterbox((70, 150), (45, 150), (96, 160)), Letterbox((300, 500), (58, 96), (96, 160)),
                Letterbox((96, 160), (96, 160), (96, 160))]:
        (ph, pw), (rh, rw) = box.padded, box.resized
        want = F.interpolate(probs[None], size=(ph, pw), mode="bilinear", align_corners=False)[:, :, :rh, :rw]
        want = F.interpolate(want, size=box.original, mode="bilinear", align_corners=False)[0]
        got = paste_masks(probs, box, 0.5)
        assert got.shape == (5, *box.original)
        close = (want - 0.5).abs() < 1e-5  # float rounding may only flip pixels sitting on the threshold
        np.testing.assert_array_equal(got[~close.numpy()], (want > 0.5).numpy()[~close.numpy()])
