"""``csrinfer predict --fast``: the GPU fast path from the command line (PyTorch models only)."""

from __future__ import annotations

import cv2
import pytest

from csrinfer.cli import main
from tests.conftest import photo_like


def test_fast_on_cpu_warns_and_still_predicts(tmp_path, small_ckpt, capsys):
    cv2.imwrite(str(tmp_path / "a.png"), photo_like(0, 90, 120))
    with pytest.warns(UserWarning, match="do nothing on cpu"):
        code = main(["predict", str(tmp_path / "a.png"), "--model", str(small_ckpt), "--out", str(tmp_path / "o"),
                     "--fast", "--device", "cpu", "--quiet"])
    assert code == 0 and (tmp_path / "o" / "a.png").is_file()


def test_fast_with_an_onnx_model_is_one_line(tmp_path, capsys):
    cv2.imwrite(str(tmp_path / "a.png"), photo_like(0, 32, 32))
    assert main(["predict", str(tmp_path / "a.png"), "--model", str(tmp_path / "m.onnx"), "--fast"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("csrinfer predict: error: --fast is a switch of PyTorch models (.pth/.pt)")
