"""COCO-format loading: every awkward case of a real annotation file, on a hand-made one."""

from __future__ import annotations

import json
import logging
from pathlib import Path

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
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        for _ in range(3):  # every epoch: replaced again, reported no more
            assert ds[3].image_id == 1
    assert "broken.png" not in caplog.text


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
    with pytest.raises(DatasetError, match="instances_val2017.json is a file; give the dataset folder"):
        find_split(tmp_path / "annotations" / "instances_val2017.json", "val")


def test_a_broken_annotation_file_is_one_sentence(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DatasetError, match="not valid COCO JSON"):
        CocoInstanceDataset(bad, tmp_path)


# -- The structure of the file: refused with one sentence naming the entry ----------------------

def _coco_file(tmp_path, edit=None) -> Path:
    """A one-image, one-category file (image 3, category 5, annotation 17), changed by ``edit``."""
    data = {"images": [dict(id=3, file_name="a.png", height=H, width=W)],
            "categories": [dict(id=5, name="five")],
            "annotations": [dict(id=17, image_id=3, category_id=5, iscrowd=0, area=400.0,
                                 segmentation=[[10, 5, 30, 5, 30, 25, 10, 25]])]}
    if edit is not None:
        edit(data)
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path


def _set(key, index, field, value):
    def edit(data):
        data[key][index][field] = value
    return edit


def _drop(key, index, field):
    def edit(data):
        del data[key][index][field]
    return edit


REFUSED = {
    "annotation without segmentation": (_drop("annotations", 0, "segmentation"), "annotation 17 has no 'segmentation'"),
    "annotation without id": (_drop("annotations", 0, "id"), "the annotation at index 0 of 'annotations' has no 'id'"),
    "string image_id": (_set("annotations", 0, "image_id", "3"), 'annotation 17 has image_id "3", not an integer'),
    "string category_id": (_set("annotations", 0, "category_id", "5"),
                           'annotation 17 has category_id "5", not an integer'),
    "float category_id": (_set("annotations", 0, "category_id", 5.5),
                          "annotation 17 has category_id 5.5, not an integer"),
    "segmentation 5": (_set("annotations", 0, "segmentation", 5),
                       "annotation 17 has segmentation 5, which is neither polygons .* nor RLE"),
    "segmentation 'abc'": (_set("annotations", 0, "segmentation", "abc"),
                           'annotation 17 has segmentation "abc", which is neither polygons'),
    "flat polygon": (_set("annotations", 0, "segmentation", [10, 5, 30, 5, 30, 25]),
                     "annotation 17 has segmentation .*a polygon segmentation is a list of lists of x, y numbers"),
    "polygon of strings": (_set("annotations", 0, "segmentation", [["10", "5", "30", "5", "30", "25"]]),
                           "annotation 17 has segmentation .*a list of lists of x, y numbers"),
    "RLE without counts": (_set("annotations", 0, "segmentation", {"size": [H, W]}),
                           "annotation 17 has an RLE segmentation without 'counts'"),
    "RLE of one number": (_set("annotations", 0, "segmentation", {"size": [H], "counts": "ab"}),
                          r"annotation 17 has an RLE segmentation of size \[40\], not \[height, width\]"),
    "RLE negative counts": (_set("annotations", 0, "segmentation", {"size": [H, W], "counts": [5, -1]}),
                            "annotation 17 has RLE counts .*neither a string nor a list of non-negative integers"),
    "string area": (_set("annotations", 0, "area", "big"), 'annotation 17 has area "big", not a non-negative number'),
    "negative area": (_set("annotations", 0, "area", -4), "annotation 17 has area -4, not a non-negative number"),
    "iscrowd 2": (_set("annotations", 0, "iscrowd", 2), "annotation 17 has iscrowd 2, not 0 or 1"),
    "image without file_name": (_drop("images", 0, "file_name"), "image 3 has no 'file_name'"),
    "image without height": (_drop("images", 0, "height"), "image 3 has no 'height'"),
    "image of width 0": (_set("images", 0, "width", 0), "image 3 has width 0, not a positive integer"),
    "string image id": (_set("images", 0, "id", "3"), 'the image at index 0 of \'images\' has id "3", not an integer'),
    "category without name": (_drop("categories", 0, "name"), "category 5 has no 'name'"),
    "string category id": (_set("categories", 0, "id", "5"),
                           'the category at index 0 of \'categories\' has id "5", not an integer'),
    "category a list": (lambda d: d["categories"].append([6, "six"]),
                        "the category at index 1 of 'categories' is a list, not an object"),
    "images an object": (lambda d: d.update(images={}), "has 'images' as an object, not a list"),
    "two images of one id": (lambda d: d["images"].append(dict(d["images"][0], file_name="b.png")),
                             "image id 3 is used by 2 image entries"),
    "two categories of one id": (lambda d: d["categories"].append(dict(id=5, name="also five")),
                                 "category id 5 is used by 2 category entries"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_file_without_cocos_structure_is_refused_naming_the_entry(tmp_path, case):
    from csrinfer.data.coco import load_coco

    edit, sentence = REFUSED[case]
    path = _coco_file(tmp_path, edit)
    with pytest.raises(DatasetError, match=sentence) as info:
        load_coco(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("case", ["annotation without segmentation", "image without height", "category without name",
                                  "string category id", "segmentation 5"])
def test_the_training_loader_refuses_it_too(tmp_path, case):
    edit, sentence = REFUSED[case]
    with pytest.raises(DatasetError, match=sentence):
        CocoInstanceDataset(_coco_file(tmp_path, edit), tmp_path)


def test_the_sentence_counts_the_other_problems(tmp_path):
    def edit(data):
        data["annotations"] += [dict(data["annotations"][0], id=18, segmentation=5),
                                dict(data["annotations"][0], id=19, image_id="3")]
        del data["images"][0]["height"]
    with pytest.raises(DatasetError, match=r"image 3 has no 'height' \(2 more entries have a problem too\)"):
        CocoInstanceDataset(_coco_file(tmp_path, edit), tmp_path)


@pytest.mark.parametrize("text, sentence", [("", "not valid COCO JSON .JSONDecodeError"),
                                            ("[]", r"not valid COCO JSON \(its top level is a list, not an object\)"),
                                            ('{"images": [], "annotations": []}', "has no 'categories' list")])
def test_what_is_not_a_coco_object_is_one_sentence(tmp_path, text, sentence):
    from csrinfer.data.coco import load_coco

    (tmp_path / "x.json").write_text(text)
    with pytest.raises(DatasetError, match=sentence):
        load_coco(tmp_path / "x.json")


def test_a_missing_area_is_that_of_the_geometry_and_a_missing_iscrowd_is_0(tmp_path):
    from csrinfer.data.coco import load_coco

    blob = np.zeros((H, W), bool)
    blob[2:9, 3:8] = True

    def edit(data):
        del data["annotations"][0]["area"], data["annotations"][0]["iscrowd"]
        data["annotations"].append(dict(id=18, image_id=3, category_id=5, segmentation=_rle(blob, compressed=True)))
        data["annotations"].append(dict(id=19, image_id=3, category_id=5, segmentation=_rle(blob, compressed=False)))
    coco = load_coco(_coco_file(tmp_path, edit))
    assert coco.anns[17]["area"] == 400.0 and coco.anns[17]["iscrowd"] == 0  # the 20 x 20 polygon
    assert coco.anns[18]["area"] == coco.anns[19]["area"] == 35.0  # 7 x 5 pixels


# -- Well-formed but degenerate: skipped and counted, never a crash ---------------------------

def _degenerate(tmp_path):
    """Image 3 with a good rectangle (17), one whose first part is too short but the second
    good (18), and annotations no rasterizer can use (20...)."""
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((H, W, 3), np.uint8))
    second = [40, 10, 55, 10, 55, 30, 40, 30]
    bad = {20: [[1, 2, 3]], 21: [], 22: [[float("nan"), 1, 20, 1, 20, 20]], 23: [[0, 0, 1e9, 0, 1e9, 10, 0, 10]],
           24: {"size": [H, W], "counts": "xyz"}, 25: {"size": [H, W], "counts": [5, 5]}}

    def edit(data):
        base = data["annotations"][0]
        data["annotations"].append(dict(base, id=18, segmentation=[[1, 1, 5, 5], second], area=300.0))
        data["annotations"] += [dict(base, id=i, segmentation=seg) for i, seg in bad.items()]
    return _coco_file(tmp_path, edit), second


def test_degenerate_segmentations_are_skipped_and_counted_in_training(tmp_path):
    ds = CocoInstanceDataset(_degenerate(tmp_path)[0], tmp_path)
    assert ds.stats["instances"] == 2
    assert ds.stats["skipped"]["few_points"] == 2 and ds.stats["skipped"]["bad_segmentation"] == 4
    _, masks, _, _ = ds.load(0)
    assert masks[1].sum() == 15 * 20  # annotation 18: its good part only


def test_degenerate_segmentations_are_left_out_of_the_evaluation(tmp_path, caplog):
    from csrinfer.apps.evaluation import coco_metrics

    path, second = _degenerate(tmp_path)
    first = [10, 5, 30, 5, 30, 25, 10, 25]
    found = [mask_utils.merge(mask_utils.frPyObjects([seg], H, W)) for seg in (first, second)]
    results = [dict(image_id=3, category_id=5, score=0.9, segmentation=rle) for rle in found]
    with caplog.at_level(logging.WARNING):
        metrics = coco_metrics(path, results)
    assert metrics["AP"] == pytest.approx(1.0)  # 17 and 18 found; 20-25 are not objects to find
    assert "6 annotation(s)" in caplog.text and "annotation ids 20, 21, 22" in caplog.text


@pytest.mark.parametrize("second_id", [17, 0])
def test_what_coco_tolerates_is_still_read_and_scored(tmp_path, second_id):
    """A garbage bbox, a repeated id (or id 0, which COCOeval takes for "unmatched") and an
    unknown image or category id are no structural problem: training skips what it cannot
    place, and the evaluation finds both objects."""
    from csrinfer.apps.evaluation import coco_metrics

    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((H, W, 3), np.uint8))
    square, triangle = [10, 5, 30, 5, 30, 25, 10, 25], [40, 10, 55, 10, 55, 30]

    def edit(data):
        base = data["annotations"][0]
        base["bbox"] = "garbage"
        data["annotations"] += [dict(base, id=second_id, segmentation=[triangle]),
                                dict(base, id=30, image_id=99), dict(base, id=31, category_id=99)]
    path = _coco_file(tmp_path, edit)
    ds = CocoInstanceDataset(path, tmp_path)
    assert ds.stats["instances"] == 2 and ds.stats["skipped"]["unknown_category"] == 1
    found = [dict(image_id=3, category_id=5, score=0.9, segmentation=mask_utils.frPyObjects([p], H, W)[0])
             for p in (square, triangle)]
    assert coco_metrics(path, found)["AP"] == pytest.approx(1.0)
