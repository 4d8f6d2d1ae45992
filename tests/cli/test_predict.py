"""``csrinfer predict``: overlays + one COCO-results JSON; bad inputs listed, good ones still written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from csrinfer.cli import main
from tests.conftest import photo_like
from tests.test_image_io import png_claiming

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def inputs(tmp_path):
    """A folder of two good images and five bad files, and a missing path."""
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "a_street.jpg"), photo_like(1, 90, 120))
    cv2.imwrite(str(folder / "b_gray.png"), photo_like(2, 100, 80)[:, :, 0])
    (folder / "c_empty.jpg").write_bytes(b"")
    (folder / "d_notes.jpg").write_text("not a picture\n")
    ok, jpeg = cv2.imencode(".jpg", photo_like(3, 200, 200))
    (folder / "e_truncated.jpg").write_bytes(jpeg.tobytes()[: len(jpeg) // 3])
    (folder / "f_bomb.png").write_bytes(png_claiming(60_000, 60_000))
    (tmp_path / "empty_folder.jpg").mkdir()
    bad = ["c_empty.jpg", "d_notes.jpg", "e_truncated.jpg", "f_bomb.png", "empty_folder.jpg", "missing.jpg"]
    return [str(folder), str(tmp_path / "empty_folder.jpg"), str(tmp_path / "missing.jpg")], bad


def test_good_images_are_written_and_bad_ones_listed(tmp_path, inputs, small_onnx, capsys):
    items, bad = inputs
    out = tmp_path / "out"
    assert main(["predict", *items, "--model", str(small_onnx), "--out", str(out), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    assert f"{len(bad)} of 8 inputs failed" in captured.err
    listed = [line for line in captured.err.splitlines() if line.startswith("  ")]
    assert len(listed) == len(bad) and all(any(name in line for line in listed) for name in bad)
    assert sorted(p.name for p in out.iterdir()) == ["a_street.png", "b_gray.png", "predictions.json"]
    assert cv2.imread(str(out / "a_street.png")).shape == (90, 120, 3)
    entries = json.loads((out / "predictions.json").read_text())
    assert {e["file_name"] for e in entries} == {"a_street.jpg", "b_gray.png"}
    assert not list(out.glob(".*")), "no temporary files left behind"


def test_coco_results_round_trip_through_pycocotools(tmp_path, small_onnx):
    from pycocotools.coco import COCO

    from csrinfer import Segmenter

    folder = tmp_path / "val"
    folder.mkdir()
    images = {"000000000042.jpg": photo_like(5, 100, 140), "000000000007.png": photo_like(6, 120, 90)}
    for name, image in images.items():
        cv2.imwrite(str(folder / name), image, [cv2.IMWRITE_JPEG_QUALITY, 100])
    assert main(["predict", str(folder), "--model", str(small_onnx), "--out", str(tmp_path / "out"),
                 "--quiet", "--no-draw"]) == 0
    gt = COCO()
    gt.dataset = {
        "images": [{"id": int(Path(n).stem), "file_name": n, "height": im.shape[0], "width": im.shape[1]}
                   for n, im in images.items()],
        "categories": [{"id": i + 1, "name": c} for i, c in enumerate(["circle", "rectangle", "triangle", "star"])],
        "annotations": [],
    }
    gt.createIndex()
    results = gt.loadRes(str(tmp_path / "out" / "predictions.json"))
    segmenter = Segmenter(small_onnx)
    for name in images:
        want = segmenter.predict(folder / name)
        anns = results.loadAnns(results.getAnnIds(imgIds=[int(Path(name).stem)]))
        assert len(anns) == len(want) > 0
        for ann, mask, score, label in zip(sorted(anns, key=lambda a: -a["score"]), want.masks, want.scores, want.labels):
            np.testing.assert_array_equal(results.annToMask(ann).astype(bool), mask)
            assert ann["score"] == pytest.approx(float(score)) and ann["category_id"] == label + 1


def test_a_video_is_annotated_frame_by_frame(tmp_path, small_onnx, capsys):
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 64))
    for i in range(6):
        writer.write(photo_like(20 + i, 64, 96))
    writer.release()
    out = tmp_path / "out"
    assert main(["predict", str(video), "--model", str(small_onnx), "--out", str(out), "--quiet"]) == 0
    out_text = capsys.readouterr().out
    assert "6 images/frames" in out_text and "per second" in out_text
    capture = cv2.VideoCapture(str(out / "clip.mp4"))
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, frame = capture.read()
    capture.release()
    assert frames == 6 and ok and frame.shape == (64, 96, 3)


def test_a_video_that_is_not_one_is_listed(tmp_path, small_onnx, capsys):
    (tmp_path / "fake.mp4").write_text("no video here")
    assert main(["predict", str(tmp_path / "fake.mp4"), "--model", str(small_onnx), "--out", str(tmp_path / "o"),
                 "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"video {tmp_path / 'fake.mp4'} cannot be opened" in err


def test_a_missing_model_is_one_line(tmp_path, capsys):
    cv2.imwrite(str(tmp_path / "a.png"), photo_like(0, 32, 32))
    assert main(["predict", str(tmp_path / "a.png"), "--model", str(tmp_path / "none.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"csrinfer predict: error: model file {tmp_path / 'none.onnx'} does not exist"


def test_the_real_command_prints_no_traceback(tmp_path, inputs, small_onnx):
    items, bad = inputs
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "csrinfer", "predict", *items, "--model", str(small_onnx),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr + proc.stdout
    assert (tmp_path / "out" / "a_street.png").is_file() and (tmp_path / "out" / "b_gray.png").is_file()


def test_without_out_a_second_run_gets_its_own_folder(tmp_path, small_onnx, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cv2.imwrite("street.jpg", photo_like(4, 64, 80))
    for _ in range(2):
        assert main(["predict", "street.jpg", "--model", str(small_onnx), "--quiet"]) == 0
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert runs == ["predict", "predict2"]
    assert all((tmp_path / "runs" / name / "predictions.json").exists() for name in runs)
    assert "results in runs/predict2" in capsys.readouterr().out


def test_an_out_folder_holding_an_earlier_run_is_refused_before_the_model_loads(tmp_path, small_onnx, capsys):
    """Its predictions.json would be replaced and its overlays mixed with the new run's."""
    cv2.imwrite(str(tmp_path / "street.jpg"), photo_like(5, 64, 80))
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "street.jpg"), "--model", str(small_onnx), "--out", str(out), "--quiet"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "street.jpg"), "--model", str(tmp_path / "not_loaded.onnx"),
                 "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"csrinfer predict: error: --out {out} already holds files this run would overwrite "
                          "(predictions.json, street.png)") and len(err.splitlines()) == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_an_out_folder_with_other_files_is_used_and_they_are_left_alone(tmp_path, small_onnx):
    """Only what the run would overwrite is refused: here the folder holds the inputs themselves."""
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.jpg"), photo_like(6, 64, 80))
    cv2.imwrite(str(photos / "b.png"), photo_like(7, 48, 64))
    b = (photos / "b.png").read_bytes()
    assert main(["predict", str(photos / "a.jpg"), "--model", str(small_onnx), "--out", str(photos), "--quiet"]) == 0
    assert sorted(p.name for p in photos.iterdir()) == ["a.jpg", "a.png", "b.png", "predictions.json"]
    assert (photos / "b.png").read_bytes() == b
    # b.png's overlay would be b.png itself: refused, unless nothing is drawn
    (photos / "predictions.json").unlink()
    assert main(["predict", str(photos / "b.png"), "--model", str(small_onnx), "--out", str(photos), "--quiet"]) == 2
    assert (photos / "b.png").read_bytes() == b
    assert main(["predict", str(photos / "b.png"), "--model", str(small_onnx), "--out", str(photos), "--quiet",
                 "--no-draw"]) == 0
    assert (photos / "b.png").read_bytes() == b
