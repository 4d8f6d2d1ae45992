"""``csrinfer demo --quick``: the main job end to end (data, training, ONNX, AP, FPS, overlays, report)."""

from __future__ import annotations

import contextlib
import io
import json

import cv2
import pytest

from csrinfer.cli import main
from csrinfer.apps.demo import MARKER, prepare_folder
from csrinfer.errors import ConfigError


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rc = main(["demo", "--quick", "--out", str(out)])
    return out, rc, printed.getvalue()


def test_demo_runs_end_to_end(demo):
    out, rc, _ = demo
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert (out / "train" / "final.pth").is_file() and (out / "export" / "model.onnx").is_file()
    assert report["training"]["iterations"] == 3
    acc, speed = report["accuracy"], report["speed"]
    assert acc["images"] == 4
    from csrinfer.apps.evaluation import coco_metrics  # the AP reported is that of the results file it wrote

    scored = coco_metrics(out / "shapes" / "annotations" / "instances_val.json",
                          json.loads((out / "export" / "results_val.json").read_text()))
    assert {k: acc[k] for k in scored} == {k: None if v is None else pytest.approx(100 * v) for k, v in scored.items()}
    assert speed["backend"] == "ONNX Runtime" and speed["device"] == "cpu" and speed["fps"] > 0
    assert speed["input_shape"] == [1, 3, 128, 160]  # the quick config's export size
    # one overlay per val image, each the size of its source image
    overlays = report["overlays"]["images"]
    assert len(overlays) == 4
    for path in overlays:
        source = out / "shapes" / "val" / (path.rsplit("/", 1)[-1])
        assert cv2.imread(path).shape == cv2.imread(str(source)).shape
    predictions = json.loads((out / "overlays" / "predictions.json").read_text())
    assert len(predictions) == report["overlays"]["instances"]
    md = (out / "report.md").read_text()
    assert "Mask AP" in md and f"{speed['fps']:.1f} FPS" in md
    # --quick warms the backbone up for 2 steps, all done: no cut to report
    assert report["training"]["warmup"]["steps"] == 2 and report["training"]["warmup"]["cut"] is None
    assert "- backbone warm-up: 2 of 2 steps\n" in md and "Expected with the defaults" in md
    assert sum(report["stage_seconds"].values()) <= report["total_seconds"] + 1


def test_demo_prints_ap_and_fps(demo):
    out, _, printed = demo
    report = json.loads((out / "report.json").read_text())
    assert "mask AP on 4 synthetic val images" in printed
    assert "training the small model for 3 iterations (--quick) on the CPU" in printed
    # what the report records is what ran, not the full-size defaults --quick replaced
    assert (report["options"]["n_train"], report["options"]["n_val"]) == (12, 4)
    assert report["command"] == f"csrinfer demo --out {out} --seed 0 --quick"
    assert f"speed: {report['speed']['fps']:.1f} FPS, ONNX Runtime on cpu" in printed


def test_a_foreign_folder_is_never_cleared(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not made by csrinfer demo"):
        prepare_folder(tmp_path)
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 2
    assert (tmp_path / "mine.txt").read_text() == "keep me" and not (tmp_path / MARKER).exists()
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_prepare_folder_clears_only_demo_files(tmp_path):
    out = prepare_folder(tmp_path / "d")
    (out / "train").mkdir()
    (out / "report.md").write_text("old")
    (out / "notes.txt").write_text("the user's")
    prepare_folder(out)
    assert not (out / "train").exists() and not (out / "report.md").exists()
    assert (out / "notes.txt").read_text() == "the user's" and (out / MARKER).exists()


def test_quick_refuses_sizes_it_would_ignore(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path / "d"), "--minutes", "3", "--n-val", "50"]) == 2
    assert capsys.readouterr().err.strip() == ("csrinfer demo: error: --quick sets its own sizes; "
                                               "leave out --minutes, --n-val or --quick")
    assert not (tmp_path / "d").exists()


def test_the_report_says_when_the_time_budget_cut_the_warm_up():
    from csrinfer.apps.demo import markdown, summary_lines

    report = json.loads(json.dumps(REPORT))
    report["training"]["warmup"] = {"configured": 300, "planned": 300, "steps": 79, "cut": "time budget",
                                    "finished": True}
    md = markdown(report)
    assert "- backbone warm-up: 79 of 300 steps (cut by the time budget" in md and "the mask AP is lower" in md
    assert "mask AP about 33" in md and "fewer --minutes" in md  # the expectation and what lowers it
    assert any(line.startswith("backbone warm-up: 79 of 300 steps (cut by the time budget")
               for line in summary_lines(report))


_LAT = {"mean": 1.0, "p50": 1.0, "p90": 1.0, "p99": 1.0}
REPORT = {
    "command": "csrinfer demo", "date": "2026-12-07", "loadavg_start": [9.0], "loadavg_end": [9.0],
    "total_seconds": 480.0, "stage_seconds": {"train": 420.0},
    "dataset": {"path": "runs/demo/shapes", "train_images": 1000, "val_images": 100},
    "training": {"config": "csr_d2s_r18_small", "checkpoint": "runs/demo/train/final.pth", "seconds": 420.0,
                 "iterations": 200, "batch_size": 8, "images_seen": 1600},
    "export": {"onnx": "runs/demo/export/model.onnx", "megabytes": 50.0, "input_size": [192, 256]},
    "accuracy": {"images": 100, "AP": 11.8, "AP50": 20.0, "AP75": 10.0, "APs": 5.0, "APm": 12.0, "APl": 20.0},
    "speed": {"backend": "ONNX Runtime", "device": "cpu", "device_name": "AMD EPYC", "batch": 1, "iters": 30,
              "fps": 30.0, "input_shape": [1, 3, 192, 256],
              "latency_ms": {k: _LAT for k in ("preprocess", "network", "postprocess", "total")}},
    "overlays": {"folder": "runs/demo/overlays", "images": []},
}
