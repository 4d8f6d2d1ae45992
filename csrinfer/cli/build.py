"""``csrinfer build``: ONNX -> TensorRT engine (csrinfer/export/tensorrt.py) plus its ``.json`` sidecar."""

from __future__ import annotations

import argparse

from csrinfer.cli.common import add_model_argument, output_folder

HELP = "build a TensorRT engine (FP16 by default) from an ONNX file"


def shape_arg(text: str) -> tuple[int, ...]:
    """argparse type for '1x3x800x1344' (or 'images:1x3x800x1344')."""
    from csrinfer.export.tensorrt import parse_shape

    try:
        return parse_shape(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_engine_arguments(p) -> None:
    """Builder flags shared by ``csrinfer build`` and ``csrinfer export``."""
    from csrinfer.export.tensorrt import (DEFAULT_MAX_HW, DEFAULT_MIN_HW, DEFAULT_OPT_HW, DEFAULT_OPT_LEVEL,
                                          DEFAULT_WORKSPACE_GIB)

    hw = lambda size: "x".join(map(str, size))  # noqa: E731
    g = p.add_argument_group("TensorRT engine")
    g.add_argument("--fp32", action="store_true", help="build an FP32 engine (default: FP16)")
    g.add_argument("--min-shape", type=shape_arg, metavar="NxCxHxW",
                   help=f"smallest input of a dynamic graph (default 1x3x{hw(DEFAULT_MIN_HW)})")
    g.add_argument("--opt-shape", type=shape_arg, metavar="NxCxHxW",
                   help=f"input TensorRT tunes for (default 1x3x{hw(DEFAULT_OPT_HW)})")
    g.add_argument("--max-shape", type=shape_arg, metavar="NxCxHxW",
                   help=f"largest input of a dynamic graph (default: the opt batch x3x{hw(DEFAULT_MAX_HW)})")
    g.add_argument("--workspace", type=float, default=DEFAULT_WORKSPACE_GIB, metavar="GIB",
                   help=f"builder scratch memory (default {DEFAULT_WORKSPACE_GIB:g})")
    g.add_argument("--timing-cache", metavar="PATH",
                   help="timing cache to read and update (default ~/.cache/csrinfer/tensorrt-VERSION-GPU.timing)")
    g.add_argument("--no-timing-cache", action="store_true", help="build without a timing cache")
    g.add_argument("--opt-level", type=int, default=DEFAULT_OPT_LEVEL, choices=range(6), metavar="0-5",
                   help=f"builder optimisation level (default {DEFAULT_OPT_LEVEL}; 5 searches longest)")
    g.add_argument("--version-compatible", action="store_true",
                   help="engine also runs on later TensorRT versions (not with the D2SFused plugin: export with --no-plugin)")
    g.add_argument("--hardware-compatible", action="store_true",
                   help="engine runs on every Ampere or newer GPU, not only this kind")
    g.add_argument("--verbose", action="store_true", help="TensorRT's verbose log")


def engine_options(args) -> dict:
    """``build_engine`` keyword arguments from the flags of :func:`add_engine_arguments`."""
    timing_cache = False if args.no_timing_cache else (args.timing_cache or True)
    return dict(fp16=not args.fp32, min_shape=args.min_shape, opt_shape=args.opt_shape, max_shape=args.max_shape,
                workspace_gib=args.workspace, timing_cache=timing_cache, opt_level=args.opt_level,
                version_compatible=args.version_compatible, hardware_compatible=args.hardware_compatible,
                verbose=args.verbose)


def add_arguments(p) -> None:
    add_model_argument(p, "--onnx", help="the ONNX model file (a standard, --plugin or --fp16-onnx export)")
    p.add_argument("--out", default=None, metavar="DIR", type=output_folder,
                   help="folder for the engine, named after the ONNX file: model.onnx -> model.plan "
                        "(default: the ONNX file's folder)")
    add_engine_arguments(p)


def run(args) -> int:
    from csrinfer.export.tensorrt import build_engine
    from csrinfer.contract.engine_sidecar import read_sidecar, sidecar_path

    from pathlib import Path

    plan_path = Path(args.out) / Path(args.model).with_suffix(".plan").name if args.out else None
    plan = build_engine(args.model, plan_path, **engine_options(args))
    _, record = read_sidecar(plan)
    shapes = record.input_shapes.get("images", {})
    size = "x".join(map(str, shapes.get("opt", []))) or "?"
    plugins = ", ".join(f"{p['domain']}::{p['op']} x{p['count']}" for p in record.plugins) or "none"
    print(f"wrote {plan} ({record.precision.upper()}, input {size}, TensorRT {record.tensorrt_version}, "
          f"{record.gpu_name}, plugins: {plugins}) and {sidecar_path(plan).name}")
    return 0
