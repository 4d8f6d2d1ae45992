"""``csrinfer export``: not built yet (issue 4, export and runtime)."""

import argparse

from csrinfer.cli.common import not_built

HELP = "export a checkpoint to ONNX (and a TensorRT engine) (not built yet)"


def add_arguments(p) -> None:
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


run = not_built("export", "issue 4, export and runtime")
