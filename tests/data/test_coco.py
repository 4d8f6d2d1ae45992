"""COCO-format loading: every awkward case of a real annotation file, on a hand-made one."""

from __future__ import annotations

import json
import logging

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from csrinfer.data.coco import CocoInstanceDataset, collate, find_split
from csrinfer.data.transforms import TrainTransform
from csrinfer.errors import DatasetError

H, W = 40, 60


def _rle(mask: np.ndarray, compressed: bool = True) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    if compressed:
        return {"size": [H, W], "counts": rle["counts"].decode("ascii")}
    flat = mask.astype(np.int8).flatten(order="F")  # uncompressed RLE: run lengths, column-major, 0s first
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]]))
    if flat[0] == 1:
        runs = np.concatenate([[0], runs])
    return {"size": [H, W], "counts": runs.tolist()}


@pytest.fixture()
def awkward(tmp_path):
    """A COCO file with polygons, RLE (both kinds), a crowd, degenerate annotations, an
    image without annotations, a missing image, an unreadable image; category ids 7 and 3."""
    rng = np.random.default_rng(0)
    images_dir = tmp_path / "images"
    images_dir.mkdir()
    for name in ("a.png", "b.png", "empty.png"):
        cv2.imwrite(str(images_dir / name), rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
    (images_dir / "broken.png").write_bytes(b"this is not a png")
    blob = rng.random((H, W)) < 0.3  # an irregular mask only RLE can carry
    blob2 = np.zeros((H, W), bool)
    blob2[5:15, 40:55] = True
    crowd = np.zeros((H, W), bool)
    crowd[20:35, 30:58] = True
    anns = [
        # image 1: the good ones
        dict(image_id=1, category_id=7, segmentation=[[10, 5, 30, 5, 30, 25, 10, 25]]),  # rectangle polygon
        dict(image_id=1, category_id=3, segmentation=_rle(blob)),
        dict(image_id=1, category_id=3, segmentation=_rle(blob2, compressed=False)),
        dict(image_id=1, category_id=7, segmentation=_rle(crowd, compressed=False), iscrowd=1),
        # image 1: degenerate ones
        dict(image_id=1, category_id=7, segmentation=[[1, 1, 5, 5]]),  # 2 points
        dict(image_id=1, category_id=7, segmentation=[[1, 1, 5, 5, 9, 9]]),  # collinear: zero area
        dict(image_id=1, category_id=7, segmentation=[[100, 100, 120, 100, 120, 120]]),  # outside the image
        dict(image_id=1, category_id=99, segmentation=[[10, 5, 30, 5, 30, 25]]),  # unknown category
        dict(image_id=1, category_id=3, segmentation={"size": [H + 1, W], "counts": "xyz"}),  # RLE of another size
        # image 2: a polygon of two parts, one of them degenerate
        dict(image_id=2, category_id=3, segmentation=[[0, 0, 20, 0, 20, 10, 0, 10], [5, 5]]),
        # image 5 (broken file) has one instance
        dict(image_id=5, category_id=7, segmentation=[[0, 0, 20, 0, 20, 10]]),
    ]
    for i, a in enumerate(anns):
        a.setdefault("iscrowd", 0)
        a["id"] = i + 1
    coco = {
        "images": [dict(id=1, file_name="a.png", height=H, width=W), dict(id=2, file_name="b.png", height=H, width=W),
                   dict(id=3, file_name="empty.png", height=H, width=W), dict(id=4, file_name="gone.png", height=H, width=W),
                   dict(id=5, file_name="broken.png", height=H, width=W)],
        "annotations": anns,
        "categories": [dict(id=7, name="seven"), dict(id=3, name="three")],
    }
    ann_file = tmp_path / "instances.json"
    ann_file.write_text(json.dumps(coco))
    return ann_file, images_dir, dict(blob=blob, blob2=blob2, crowd=crowd)


def test_categories_are_labelled_in_id_order(awkward):
    ds = CocoInstanceDataset(*awkward[:2])
    assert ds.class_names == ["three", "seven"] and ds.category_ids == [3, 7]


def test_degenerate_annotations_are_counted_and_missing_images_dropped(awkward, caplog):
    with caplog.at_level(logging.WARNING):
        ds = CocoInstanceDataset(*awkward[:2])
    assert ds.stats["skipped"] == {"few_points": 1, "zero_area": 1, "outside_image": 1, "unknown_category": 1,
                                   "bad_segmentation": 1}
    assert ds.stats["images_missing"] == 1 and "gone.png" in caplog.text
    assert ds.stats["crowd"] == 1
    assert ds.stats["instances"] == 5  # 3 on image 1, 1 on image 2, 1 on the broken image
    assert len(ds) == 4  # a, b, empty (kept although it has no annotation), broken (found unreadable later)


def test_masks_match_their_annotations(awkward):
    ann_file, images_dir, truth = awkward
    ds = CocoInstanceDataset(ann_file, images_dir)
    image, masks, labels, ignore = ds.load(0)
    assert image.shape == (H, W, 3) and masks.shape == (3, H, W)
    assert labels.tolist() == [1, 0, 0]  # seven, three, three
    polygon = np.zeros((H, W), bool)
    polygon[5:25, 10:30] = True  # the pixels whose centres lie inside x 10..30, y 5..25
    np.testing.assert_array_equal(masks[0].astype(bool), polygon)
    np.testing.assert_array_equal(masks[1].astype(bool), truth["blob"])
    np.testing.assert_array_equal(masks[2].astype(bool), truth["blob2"])
    np.testing.assert_array_equal(ignore, truth["crowd"])


def test_polygon_parts_under_three_points_are_dropped_not_the_instance(awkward):
    ds = CocoInstanceDataset(*awkward[:2])
    _, masks, labels, ignore = ds.load(1)
    assert masks.shape[0] == 1 and labels.tolist() == [0] and ignore is None
    assert masks[0].sum() == 200  # the 20 x 10 rectangle


def test_an_image_without_annotations_is_a_sample_with_no_instances(awkward):
    ds = CocoInstanceDataset(*awkward[:2], transform=TrainTransform((64, 64), 96, 0.0))
    sample = ds[2]
    assert sample.masks.shape[0] == 0 and sample.labels.shape == (0,) and sample.image.shape == (3, 64, 96)


def test_an_unreadable_image_is_reported_and_replaced(awkward, caplog):
    ds = CocoInstanceDataset(*awkward[:2], transform=TrainTransform((64, 64), 96, 0.0))
    with caplog.at_level(logging.WARNING):
        sample = ds[3]  # broken.png: the next readable image (a.png, index 0) takes its place
    assert "broken.png" in caplog.text
    assert sample.image_id == 1 and sample.masks.shape[0] == 3


def test_collate_pads_images_and_masks_to_one_size(awkward):
    ds = CocoInstanceDataset(*awkward[:2], transform=TrainTransform((64, 64), 96, 0.0))
    batch = collate([ds[0], ds[2]])
    assert tuple(batch.images.shape) == (2, 3, 64, 96)
    assert tuple(batch.masks[0].shape) == (3, 64, 96) and tuple(batch.masks[1].shape) == (0, 64, 96)
    assert batch.ignores[0].any() and not batch.ignores[1].any()
    assert batch.image_ids == [1, 3]


def test_augmentation_depends_only_on_seed_epoch_and_index(awkward):
    ds = CocoInstanceDataset(*awkward[:2], transform=TrainTransform((48, 80), 200, 0.5), seed=3)
    first = [ds[0].image for _ in range(2)]
    np.testing.assert_array_equal(first[0], first[1])
    shapes = set()
    for epoch in range(8):
        ds.set_epoch(epoch)
        shapes.add(ds[0].image.shape)
    assert len(shapes) > 1  # multi-scale: the size changes with the epoch


def test_find_split_reads_both_layouts_and_says_what_it_wanted(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_val2017.json").write_text("{}")
    (tmp_path / "val2017").mkdir()
    assert find_split(tmp_path, "val") == (tmp_path / "annotations" / "instances_val2017.json", tmp_path / "val2017")
    with pytest.raises(DatasetError, match="instances_train.json"):
        find_split(tmp_path, "train")
    with pytest.raises(DatasetError, match="does not exist"):
        find_split(tmp_path / "nope", "train")


def test_a_broken_annotation_file_is_one_sentence(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DatasetError, match="not valid COCO JSON"):
        CocoInstanceDataset(bad, tmp_path)
