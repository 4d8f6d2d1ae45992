"""``Instances``: what every backend returns; tight boxes, indexing, COCO results (design.md §2)."""

from __future__ import annotations

import numpy as np
import pytest

from csrinfer.runtime.instances import Instances, masks_to_boxes


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
    from csrinfer.errors import ConfigError

    empty = Instances(np.zeros((0, 4, 4), bool), np.zeros(0, np.int64), np.zeros(0, np.float32),
                      np.zeros((0, 4)), ("a", "b", "c"))
    with pytest.raises(ConfigError, match="category_ids has 2 ids for 3 classes"):
        empty.to_coco(image_id=1, category_ids=[10, 20])
