"""``csrinfer check``: the parity report of two model files on the same images."""

from __future__ import annotations

import json

import cv2

from csrinfer.cli import main
from tests.conftest import photo_like


def test_onnx_export_passes_against_its_checkpoint(small_ckpt, small_onnx, capsys):
    assert main(["check", "--model", str(small_ckpt), "--against", str(small_onnx)]) == 0
    out = capsys.readouterr().out
    assert "PyTorch" in out and "ONNX Runtime" in out and "PASS" in out
    for field in ("max abs error", "mask IoU", "score diff", "count mismatches"):
        assert field in out


def test_json_report_on_given_images_lists_unreadable_ones(tmp_path, small_ckpt, small_onnx, capsys):
    cv2.imwrite(str(tmp_path / "a.png"), photo_like(3, 70, 100))
    (tmp_path / "b.jpg").write_text("text")
    assert main(["check", "--model", str(small_ckpt), "--against", str(small_onnx), "--images",
                 str(tmp_path / "a.png"), str(tmp_path / "b.jpg"), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 1 and report["matched"] == report["instances_a"] > 0
    assert report["mask_iou_min"] >= 0.99 and not report["passed"]
    assert len(report["failures"]) == 1 and "b.jpg is not an image file" in report["failures"][0]



def test_max_pixels_refuses_a_larger_image_and_compares_the_others(tmp_path, small_onnx, capsys):
    cv2.imwrite(str(tmp_path / "a.png"), photo_like(3, 70, 100))  # 7000 pixels
    cv2.imwrite(str(tmp_path / "b.png"), photo_like(4, 40, 50))  # 2000 pixels
    assert main(["check", "--model", str(small_onnx), "--against", str(small_onnx), "--images",
                 str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--max-pixels", "5000", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 1 and len(report["failures"]) == 1 and "a.png" in report["failures"][0]


def test_runtime_applies_to_the_model_compared_against(small_onnx, capsys):
    import pytest

    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'csrinfer[openvino]')")
    # random weights: maskness rescoring jumps where a mask pixel sits at the threshold (6e-3 seen)
    assert main(["check", "--model", str(small_onnx), "--against", str(small_onnx), "--runtime", "openvino",
                 "--precision", "f32", "--score-tol", "0.02"]) == 0
    out = capsys.readouterr().out
    assert "(ONNX Runtime) vs" in out and "(OpenVINO)" in out and "PASS" in out
