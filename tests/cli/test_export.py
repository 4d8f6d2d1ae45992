"""``csrinfer export``: writes model.onnx with a static batch; says why no engine; bad flags are one line."""

from __future__ import annotations

import importlib.util

import numpy as np
import onnx
import pytest

from csrinfer.cli import main
from tests.conftest import photo_like


def test_export_a_static_batch_and_run_it(tmp_path, small_ckpt, capsys):
    from csrinfer import Segmenter
    from csrinfer.apps.compare import match_instances

    assert main(["export", "--model", str(small_ckpt), "--out", str(tmp_path), "--input-size", "64x96",
                 "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'model.onnx'} (static 2x3x64x96" in out
    if importlib.util.find_spec("tensorrt") is None:
        assert "TensorRT engine not built" in out
    onnx.checker.check_model(onnx.load(str(tmp_path / "model.onnx")), full_check=True)

    onnx_seg, torch_seg = Segmenter(tmp_path / "model.onnx"), Segmenter(small_ckpt, input_size=(64, 96))
    assert onnx_seg.info.batch == 2
    images = [photo_like(70 + i, 60 + 10 * i, 90) for i in range(3)]  # 3 images: the last batch is padded
    for got, image in zip(onnx_seg.predict_batch(images), images):
        want = torch_seg.predict(image)
        pairs = match_instances(got, want)
        assert len(got) == len(want) == len(pairs) > 0
        assert np.mean([iou for *_, iou in pairs]) > 0.99


def test_bad_flags_are_one_line(tmp_path, small_ckpt, capsys):
    assert main(["export", "--model", str(small_ckpt), "--out", str(tmp_path), "--input-size", "100x224"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "multiples of 32" in err
    assert main(["export", "--model", str(tmp_path / "none.pth")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "model.onnx").exists()


def test_plugin_and_no_plugin_together_are_refused(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["export", "--model", "m.pth", "--plugin", "--no-plugin"])
    assert stop.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_a_dynamic_graph_with_an_input_size_is_refused(capsys):
    assert main(["export", "--model", "m.pth", "--dynamic", "--input-size", "640x640"]) == 2
    assert "--input-size fixes a static graph's size and a --dynamic graph takes any size" in capsys.readouterr().err


def test_int8_and_openvino_files_describe_themselves(tmp_path, small_ckpt, capsys):
    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'csrinfer[openvino]')")
    from csrinfer import Segmenter
    from csrinfer.data.synthetic import write_synthetic
    from csrinfer.export.int8 import MIN_CALIB_IMAGES

    data = write_synthetic(tmp_path / "shapes", n_train=MIN_CALIB_IMAGES, n_val=1, seed=2)
    out_dir = tmp_path / "out"
    assert main(["export", "--ckpt", str(small_ckpt), "--out", str(out_dir), "--input-size", "64x96",
                 "--int8", "--calib", str(data), "--openvino", "--onnx-only"]) == 0
    printed = capsys.readouterr().out
    for name in ("model.int8.onnx", "model.xml", "model.int8.xml"):
        assert f"wrote {out_dir / name}" in printed
    assert (out_dir / "model.bin").is_file() and (out_dir / "model.int8.bin").is_file()
    fp32, int8 = Segmenter(out_dir / "model.xml"), Segmenter(out_dir / "model.int8.xml")
    assert fp32.backend.name == int8.backend.name == "OpenVINO"
    assert (fp32.info.precision, int8.info.precision) == ("fp32", "int8")
    assert int8.info.input_size == (64, 96) and int8.class_names == fp32.class_names


@pytest.mark.parametrize("flags", [["--int8"], ["--calib", "somewhere"]])
def test_int8_and_calib_go_together(flags, small_ckpt, capsys):
    assert main(["export", "--ckpt", str(small_ckpt), *flags]) == 2
    assert "--int8 needs --calib DIR" in capsys.readouterr().err


def test_too_few_calibration_images_is_said_before_the_export(tmp_path, small_ckpt, capsys):
    from csrinfer.data.synthetic import write_synthetic

    data = write_synthetic(tmp_path / "few", n_train=2, n_val=1, seed=2)
    assert main(["export", "--ckpt", str(small_ckpt), "--out", str(tmp_path / "out"), "--int8", "--calib", str(data)]) == 2
    assert "INT8 calibration needs at least 16" in capsys.readouterr().err
    assert not (tmp_path / "out" / "model.onnx").exists()
