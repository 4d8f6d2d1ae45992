"""Mask AP with pycocotools: ground truth fed back as predictions scores 1.0; less scores less."""

from __future__ import annotations

import json

import numpy as np
import pytest

from csrinfer.data.coco import CocoInstanceDataset, find_split, load_coco
from csrinfer.data.synthetic import write_synthetic
from csrinfer.apps.evaluation import METRICS, coco_metrics, evaluate_checkpoint, format_table
from csrinfer.runtime.instances import Instances, masks_to_boxes


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("eval") / "shapes", n_train=1, n_val=4, seed=2)


def _ground_truth_as_results(root, keep=lambda i: True):
    ann, images = find_split(root, "val")
    ds = CocoInstanceDataset(ann, images)
    results, n = [], 0
    for i, rec in enumerate(ds.records):
        _, masks, labels, _ = ds.load(i)
        chosen = [j for j in range(len(masks)) if keep(n + j)]
        n += len(masks)
        inst = Instances(masks[chosen].astype(bool), labels[chosen], np.ones(len(chosen), np.float32),
                         masks_to_boxes(masks[chosen].astype(bool)), ds.class_names)
        results += inst.to_coco(rec["id"], ds.category_ids)
    return ann, results, n


def test_ground_truth_as_predictions_scores_one(shapes):
    ann, results, n = _ground_truth_as_results(shapes)
    assert len(results) == n > 4
    metrics = coco_metrics(ann, results)
    for key in ("AP", "AP50", "AP75"):
        assert metrics[key] == pytest.approx(1.0)
    assert all(v is None or v == pytest.approx(1.0) for v in metrics.values())


def test_missing_predictions_lower_the_score(shapes):
    ann, results, n = _ground_truth_as_results(shapes, keep=lambda i: i % 2 == 0)
    metrics = coco_metrics(load_coco(ann), results)
    assert 0.2 < metrics["AP"] < 0.8


def test_no_predictions_score_zero(shapes):
    ann = find_split(shapes, "val")[0]
    assert coco_metrics(ann, [])["AP"] == 0.0


def test_the_table_has_the_papers_columns():
    table = format_table({"AP": 0.354, "AP50": 0.568, "AP75": 0.369, "APs": None, "APm": 0.383, "APl": 0.538})
    header, values = table.splitlines()
    assert header.split() == list(METRICS)
    assert values.split() == ["35.4", "56.8", "36.9", "-", "38.3", "53.8"]


def test_evaluate_checkpoint_writes_coco_results(shapes, tmp_path, small_model, small_cfg):
    from csrinfer.model.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "model.pth", small_model, small_cfg)
    report = evaluate_checkpoint(ckpt, shapes, out=tmp_path / "res.json", device="cpu", progress=False)
    assert set(METRICS) <= set(report) and report["images"] == 4 and report["fps"] > 0
    results = json.loads((tmp_path / "res.json").read_text())
    assert results and {"image_id", "category_id", "segmentation", "score"} <= set(results[0])
    assert isinstance(results[0]["segmentation"]["counts"], str)


def test_evaluating_leaves_the_results_as_they_were(tmp_path):
    """pycocotools' loadRes adds keys (bbox, area, id) to each entry; a second evaluation of the
    same list must not see them."""
    data = write_synthetic(tmp_path / "shapes", n_train=1, n_val=2, seed=0)
    gt_file = data / "annotations" / "instances_val.json"
    rows = [{"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": a["segmentation"],
             "score": 1.0} for a in json.loads(gt_file.read_text())["annotations"]]
    before = json.dumps(rows)
    assert coco_metrics(gt_file, rows)["AP"] == pytest.approx(1.0)
    assert json.dumps(rows) == before and coco_metrics(gt_file, rows)["AP"] == pytest.approx(1.0)


def test_ground_truth_without_area_or_iscrowd_scores_as_with_them(tmp_path):
    """COCOeval sorts objects by area into APs/APm/APl: a missing one is computed, not a KeyError."""
    data = write_synthetic(tmp_path / "shapes", n_train=1, n_val=3, seed=1)
    gt_file = data / "annotations" / "instances_val.json"
    gt = json.loads(gt_file.read_text())
    rows = [{"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": a["segmentation"],
             "score": 1.0} for a in gt["annotations"]]
    with_area = coco_metrics(gt_file, rows)
    for a in gt["annotations"]:
        del a["area"], a["iscrowd"]
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(gt))
    assert coco_metrics(bare, rows) == with_area and with_area["AP"] == pytest.approx(1.0)


def test_a_scoring_failure_keeps_the_predictions_and_says_where(shapes, tmp_path, small_model, small_cfg, monkeypatch):
    import pycocotools.cocoeval

    from csrinfer.model.checkpoint import save_checkpoint
    from csrinfer.errors import DatasetError

    class Broken:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("no scoring today\nsecond line")

    ckpt = save_checkpoint(tmp_path / "model.pth", small_model, small_cfg)
    monkeypatch.setattr(pycocotools.cocoeval, "COCOeval", Broken)
    out = tmp_path / "res.json"
    with pytest.raises(DatasetError, match=r"failed \(RuntimeError: no scoring today\); they are kept in ") as info:
        evaluate_checkpoint(ckpt, shapes, out=out, device="cpu", progress=False)
    assert str(out) in str(info.value) and "\n" not in str(info.value)
    results = json.loads(out.read_text())
    assert results and f"scoring the {len(results)} predictions" in str(info.value)


def test_eval_on_a_file_of_the_wrong_structure_is_one_line_and_exit_2(tmp_path, small_model, small_cfg, capsys):
    from csrinfer.model.checkpoint import save_checkpoint
    from csrinfer.cli import main

    data = write_synthetic(tmp_path / "shapes", n_train=1, n_val=2, seed=0)
    gt_file = data / "annotations" / "instances_val.json"
    gt = json.loads(gt_file.read_text())
    gt["annotations"][1]["segmentation"] = "abc"
    gt_file.write_text(json.dumps(gt))
    ckpt = save_checkpoint(tmp_path / "model.pth", small_model, small_cfg)
    assert main(["eval", "--model", str(ckpt), "--data", str(data), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"csrinfer eval: error: annotation file {gt_file} is not valid COCO JSON: annotation "
                          f"{gt['annotations'][1]['id']} has segmentation \"abc\"") and "\n" not in err
    assert not (tmp_path / "results_val.json").exists()


def test_a_segmenter_needs_out_and_out_and_max_images_are_checked(shapes, tmp_path, small_model, small_cfg):
    from csrinfer import Segmenter
    from csrinfer.errors import ConfigError

    seg = Segmenter(small_model, cfg=small_cfg)
    with pytest.raises(ConfigError, match="evaluating a Segmenter needs out="):
        evaluate_checkpoint(seg, shapes, progress=False)
    with pytest.raises(ConfigError, match=f"out={tmp_path} is a folder; give the path of a .json file"):
        evaluate_checkpoint(seg, shapes, out=tmp_path, progress=False)
    for bad in (0, -1):  # -1 would drop the last image, 0 would report AP 0 on nothing
        with pytest.raises(ConfigError, match=f"max_images must be a whole number of at least 1, got {bad}"):
            evaluate_checkpoint(seg, shapes, out=tmp_path / "r.json", max_images=bad, progress=False)


def test_ctrl_c_keeps_the_predictions_of_the_images_done(shapes, tmp_path, small_model, small_cfg, capsys):
    from csrinfer.runtime.segmenter import Segmenter

    segmenter = Segmenter(small_model, cfg=small_cfg, device="cpu")
    calls, predict = [], segmenter.predict

    def interrupted_on_the_third(image):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return predict(image)

    segmenter.predict = interrupted_on_the_third
    out = tmp_path / "res.json"
    with pytest.raises(KeyboardInterrupt):
        evaluate_checkpoint(segmenter, shapes, out=out, progress=False)
    done = {r["image_id"] for r in json.loads(out.read_text())}
    first_two = sorted(load_coco(find_split(shapes, "val")[0]).getImgIds())[:2]
    assert done <= set(first_two) and "first 2 images" in capsys.readouterr().err


def test_masks_are_scored_not_boxes(shapes):
    """Every object predicted as its filled box: right boxes, wrong masks. Mask AP sees it."""
    ann, _, _ = _ground_truth_as_results(shapes)
    ds = CocoInstanceDataset(*find_split(shapes, "val"))
    results = []
    for i, rec in enumerate(ds.records):
        _, masks, labels, _ = ds.load(i)
        boxes = masks_to_boxes(masks.astype(bool))
        filled = np.zeros(masks.shape, bool)
        for m, (x1, y1, x2, y2) in zip(filled, boxes.astype(int)):
            m[y1:y2, x1:x2] = True
        inst = Instances(filled, labels, np.ones(len(labels), np.float32), masks_to_boxes(filled), ds.class_names)
        results += inst.to_coco(rec["id"], ds.category_ids)
    assert coco_metrics(ann, results, iou_type="bbox")["AP"] == pytest.approx(1.0)  # the boxes are exact...
    assert coco_metrics(ann, results)["AP"] < 0.9  # ...the default, mask AP, is not fooled
