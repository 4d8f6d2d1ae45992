"""``csrinfer data``: not built yet (issue 3, training core)."""

import argparse

from csrinfer.cli.common import not_built

HELP = "dataset helpers: 'data synth' writes a synthetic COCO-format dataset (not built yet)"


def add_arguments(p) -> None:
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


run = not_built("data", "issue 3, training core")
