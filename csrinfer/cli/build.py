"""``csrinfer build``: not built yet (issue 6, TensorRT)."""

import argparse

from csrinfer.cli.common import not_built

HELP = "build a TensorRT engine from an ONNX file (not built yet)"


def add_arguments(p) -> None:
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


run = not_built("build", "issue 6, TensorRT")
