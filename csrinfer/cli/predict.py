"""``csrinfer predict``: not built yet (issue 4, export and runtime)."""

import argparse

from csrinfer.cli.common import not_built

HELP = "run a model on images, a directory or a video (not built yet)"


def add_arguments(p) -> None:
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


run = not_built("predict", "issue 4, export and runtime")
