"""``csrinfer train``: not built yet (issue 3, training core)."""

import argparse

from csrinfer.cli.common import not_built

HELP = "train a model on a COCO-format dataset (not built yet)"


def add_arguments(p) -> None:
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


run = not_built("train", "issue 3, training core")
