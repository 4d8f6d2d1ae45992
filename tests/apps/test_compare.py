"""Parity comparison: instance matching, mask IoU, and what cannot be compared."""

from __future__ import annotations

import numpy as np
import pytest

from csrinfer.errors import ConfigError
from csrinfer.runtime.backends.base import Backend
from csrinfer.apps.compare import ParityReport, mask_iou, match_instances, parity_segmenters
from csrinfer.runtime.instances import Instances, masks_to_boxes
from csrinfer.contract.model_info import ModelInfo


def instances(masks, labels, scores):
    masks = np.asarray(masks, bool)
    return Instances(masks, np.asarray(labels), np.asarray(scores, np.float32), masks_to_boxes(masks), ("a", "b"))


def test_mask_iou_against_a_direct_count():
    rng = np.random.default_rng(0)
    a, b = rng.random((30, 40)) > 0.5, rng.random((30, 40)) > 0.5
    want = (a & b).sum() / (a | b).sum()
    assert mask_iou(a, b) == pytest.approx(want)
    boxes = masks_to_boxes(np.stack([a, b]))
    assert mask_iou(a, b, boxes[0], boxes[1]) == pytest.approx(want)  # the box crop loses nothing


def test_matching_is_one_to_one_by_class_and_iou():
    m = np.zeros((3, 10, 10), bool)
    m[0, :5, :5] = True
    m[1, 5:, 5:] = True
    m[2, :5, :5] = True
    m[2, 0, 5] = True  # nearly m[0]
    a = instances(m[[0, 1]], [0, 1], [0.9, 0.8])
    b = instances(m[[1, 2, 0]], [1, 0, 1], [0.8, 0.85, 0.7])  # b[2] is a[0]'s mask but of class 1
    pairs = match_instances(a, b)
    assert [(i, j) for i, j, _ in pairs] == [(0, 1), (1, 0)]
    assert pairs[0][2] == pytest.approx(25 / 26) and pairs[1][2] == 1.0


class StaticModel(Backend):
    def __init__(self, size, classes=("a",), max_per_img=100):
        self.info = ModelInfo(classes, input_size=size, batch=1, inference={"max_per_img": max_per_img})

    def infer(self, feeds):
        raise AssertionError("not run")


def test_models_of_different_static_sizes_cannot_be_compared():
    with pytest.raises(ConfigError, match="different static input sizes"):
        parity_segmenters(StaticModel((64, 64)), StaticModel((32, 64)))
    a, b = parity_segmenters(StaticModel((64, 64)), StaticModel((64, 64)))
    assert a.input_size == b.input_size == (64, 64)


@pytest.mark.parametrize("other,says", [
    (StaticModel((64, 64), classes=("a", "b")), r"different classes \(\['a'\] vs \['a', 'b'\]\)"),
    (StaticModel((64, 64), max_per_img=20), r"different output slots \(max_per_img\) \(100 vs 20\)"),
])
def test_two_different_models_are_refused_not_compared(other, says):
    with pytest.raises(ConfigError, match=says):
        parity_segmenters(StaticModel((64, 64)), other)


def test_no_instance_in_either_model_is_inconclusive_not_a_pass():
    nothing = ParityReport(images=3)
    assert nothing.inconclusive and not nothing.passed()
    assert "neither model found an instance" in nothing.lines()[-1]
    found = ParityReport(images=3, instances_a=2, instances_b=2, matched=2, mask_iou_mean=1.0, mask_iou_min=1.0,
                         score_diff_mean=0.0, score_diff_max=0.0)
    assert not found.inconclusive and found.passed()
