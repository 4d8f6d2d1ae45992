"""benchmarks/train_diagnose.py: what a trained model's category branch and features know."""

from __future__ import annotations

import json

import pytest

from tests.benchmarks.test_run_all import load
from tests.train.conftest import tiny_config, tiny_data  # noqa: F401 (a fixture)


def _gt_as_predictions(gt_file, true_score, wrong_score):
    """Every ground-truth object predicted twice: with its class and with the next one."""
    gt = json.loads(gt_file.read_text())
    n = len(gt["categories"])
    rows = []
    for a in gt["annotations"]:
        wrong = a["category_id"] % n + 1
        for category, score in ((a["category_id"], true_score), (wrong, wrong_score)):
            rows.append({"image_id": a["image_id"], "category_id": category, "segmentation": a["segmentation"],
                         "score": score})
    return gt, rows


def test_keeping_the_best_of_overlapping_predictions_gives_the_ap_of_right_classes(tiny_data):
    diagnose = load("train_diagnose")
    from csrinfer.apps.evaluation import coco_metrics

    gt_file = tiny_data / "annotations" / "instances_val.json"
    gt, rows = _gt_as_predictions(gt_file, true_score=0.5, wrong_score=0.9)  # the wrong class ranks first
    kept = diagnose.keep_best_of_overlapping(rows)
    assert len(kept) == len(gt["annotations"]) and {r["score"] for r in kept} == {0.9}
    assert coco_metrics(gt_file, rows)["AP"] < 0.9  # wrong classes cost per-class AP...
    assert diagnose.class_agnostic_ap(gt_file, kept)["AP"] == pytest.approx(1.0)  # ...not the masks


def test_the_report_holds_the_confusion_matrix_and_probe_accuracies(tiny_data, tmp_path):
    diagnose = load("train_diagnose")
    from csrinfer.train.loop import train

    ckpt = train(tiny_config(), tiny_data, tmp_path / "run", max_iters=2, progress=False)
    out = tmp_path / "diagnose.json"
    assert diagnose.main(["--ckpt", str(ckpt), "--data", str(tiny_data), "--images", "8", "--threads", "1",
                          "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    confusion = report["category_branch"]["confusion_rows_target_cols_predicted"]
    assert len(confusion) == 4 and all(len(row) == 4 for row in confusion) and sum(map(sum, confusion)) > 0
    assert set(report["linear_probe_accuracy"]) == {"F_centre_cell", "F_mask_mean", "C3_mask_mean", "C5_mask_mean"}
    assert all(0.0 <= v <= 1.0 for v in report["linear_probe_accuracy"].values())
    assert report["probe_objects"] >= 8 and report["chance_accuracy"] == 0.25 and "--images 8" in report["command"]
