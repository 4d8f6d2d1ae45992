"""``csrinfer build``: flags, and one-line errors without a traceback."""

from __future__ import annotations

import sys

import pytest

from csrinfer.cli import build_parser, main
from csrinfer.cli.build import engine_options


def test_flags_become_builder_options():
    args = build_parser().parse_args(["build", "--model", "m.onnx", "--fp32", "--min-shape", "1x3x320x320",
                                      "--opt-shape", "images:2x3x640x640", "--max-shape", "4x3x1344x1344",
                                      "--workspace", "2", "--opt-level", "5", "--no-timing-cache",
                                      "--hardware-compatible"])
    opts = engine_options(args)
    assert opts["fp16"] is False and opts["timing_cache"] is False and opts["workspace_gib"] == 2.0
    assert opts["min_shape"] == (1, 3, 320, 320) and opts["opt_shape"] == (2, 3, 640, 640)
    assert opts["max_shape"] == (4, 3, 1344, 1344) and opts["opt_level"] == 5 and opts["hardware_compatible"]
    defaults = engine_options(build_parser().parse_args(["build", "--model", "m.onnx"]))
    assert defaults["fp16"] is True and defaults["timing_cache"] is True and defaults["min_shape"] is None
    cached = engine_options(build_parser().parse_args(["build", "--model", "m.onnx", "--timing-cache", "t.cache"]))
    assert cached["timing_cache"] == "t.cache"


def test_a_malformed_shape_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["build", "--model", "m.onnx", "--min-shape", "800,1344"])
    assert e.value.code == 2
    assert "'800,1344' is not a shape such as 1x3x800x1344" in capsys.readouterr().err


def test_missing_onnx_is_one_line(tmp_path, capsys):
    assert main(["build", "--model", str(tmp_path / "nope.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"csrinfer build: error: ONNX file {tmp_path / 'nope.onnx'} does not exist"


def test_missing_tensorrt_is_one_line_with_the_install_command(tmp_path, capsys, monkeypatch):
    from tests.export.test_tensorrt import topk_graph

    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(topk_graph(10).SerializeToString())
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert main(["build", "--model", str(onnx_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "TensorRT is not installed: pip install 'csrinfer[trt]' --extra-index-url https://pypi.nvidia.com" in err


def test_export_takes_the_plugin_fp16_and_engine_flags():
    from csrinfer.cli.export import options_from_args

    args = build_parser().parse_args(["export", "--model", "m.pth", "--plugin", "--fp16-onnx", "--opt-shape",
                                      "1x3x640x640", "--workspace", "8"])
    options = options_from_args(args)
    assert options.write_plugin and options.plugin and options.fp16_onnx
    assert options.builder["opt_shape"] == (1, 3, 640, 640) and options.builder["workspace_gib"] == 8.0
    options = options_from_args(build_parser().parse_args(["export", "--model", "m.pth", "--no-plugin", "--fp32"]))
    assert not options.plugin and not options.write_plugin and options.builder["fp16"] is False
