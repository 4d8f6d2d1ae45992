"""``csrinfer export``: checkpoint -> model.onnx (-> model.plan where TensorRT is installed).

Thin: parses the flags into :class:`csrinfer.export.pipeline.ExportOptions` and calls
:func:`csrinfer.export.pipeline.export_model`.
"""

from __future__ import annotations

from csrinfer.cli.build import add_engine_arguments, engine_options
from csrinfer.cli.common import add_model_argument, output_folder, parse_hw, positive_int

HELP = "export a checkpoint to ONNX (and a TensorRT engine where TensorRT is installed; INT8, OpenVINO IR on request)"


def add_arguments(p) -> None:
    add_model_argument(p, "--ckpt", help="checkpoint .pth to export")
    p.add_argument("--out", default=None, metavar="DIR", type=output_folder, help="output folder (default: the checkpoint's folder)")
    p.add_argument("--input-size", type=parse_hw, default=None, metavar="HxW",
                   help="input size, multiples of 32 (default: the config's export size, 800x1344 for the paper model)")
    p.add_argument("--dynamic", action="store_true", help="batch, height and width free in the graph")
    p.add_argument("--batch", type=positive_int, default=1, help="static batch size (default 1; ignored with --dynamic)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18)")
    p.add_argument("--no-simplify", action="store_true", help="skip onnxslim's constant folding")
    p.add_argument("--onnx-only", action="store_true", help="do not go on to a TensorRT engine")
    plugin = p.add_mutually_exclusive_group()
    plugin.add_argument("--plugin", action="store_true",
                        help="also write model.plugin.onnx (D2SFused nodes) without TensorRT; the engine always uses it")
    plugin.add_argument("--no-plugin", action="store_true", help="build the engine from the standard graph")
    p.add_argument("--fp16-onnx", action="store_true",
                   help="also write model.fp16.onnx (FP16 network, FP32 I/O); the FP16 engine is built from it")
    p.add_argument("--int8", action="store_true",
                   help="also write model.int8.onnx: the network INT8 (QDQ), calibrated on --calib, post-processing FP32")
    p.add_argument("--calib", default=None, metavar="DIR", help="COCO-format dataset folder whose images calibrate --int8")
    p.add_argument("--calib-split", default="train", help="split of --calib (default: train)")
    p.add_argument("--openvino", action="store_true",
                   help="also write OpenVINO IR: model.xml + model.bin (and model.int8.xml with --int8)")
    add_engine_arguments(p)
    p.add_argument("--triton-repo", metavar="DIR", default=None, type=output_folder,
                   help="also write a Triton model repository for what was exported (the engine, else the ONNX, "
                        "behind pre/post-processing in an ensemble; see docs/serving.md)")


def options_from_args(args):
    """The ExportOptions the flags ask for (later flags add fields here)."""
    from csrinfer.errors import ConfigError
    from csrinfer.export.pipeline import ExportOptions

    if args.dynamic and args.input_size is not None:
        raise ConfigError("--input-size fixes a static graph's size and a --dynamic graph takes any size; "
                          "give one of them (--opt-shape tunes a dynamic engine for one size)")
    if args.int8 != (args.calib is not None):
        raise ConfigError("--int8 needs --calib DIR (a COCO-format dataset whose images calibrate it), and "
                          "--calib is only for --int8")
    options = ExportOptions(out_dir=args.out, input_size=args.input_size, batch=args.batch, dynamic=args.dynamic,
                            simplify=not args.no_simplify, engine=not args.onnx_only, plugin=not args.no_plugin,
                            write_plugin=args.plugin, fp16_onnx=args.fp16_onnx, builder=engine_options(args),
                            int8_calib=args.calib, calib_split=args.calib_split, openvino=args.openvino)
    if args.opset is not None:
        options.opset = args.opset
    return options


def run(args) -> int:
    from csrinfer.export.pipeline import export_model

    result = export_model(args.model, options_from_args(args))
    info = result.info
    shape = "dynamic batch and size" if info.dynamic else f"static {info.batch}x3x{info.input_size[0]}x{info.input_size[1]}"
    print(f"wrote {result.onnx} ({shape}, {len(info.class_names)} classes, "
          f"{result.onnx.stat().st_size / 1e6:.1f} MB)")
    for graph in result.graphs:
        print(f"wrote {graph}")
    if result.engine is not None:
        print(f"wrote {result.engine} and {result.engine.name}.json")
    for note in result.notes:
        print(note)
    if args.triton_repo:
        from csrinfer.serve.repository import write_triton_repo

        served = result.engine or result.onnx
        print(f"wrote Triton repository {write_triton_repo(served, args.triton_repo)} (serving {served.name})")
    return 0
