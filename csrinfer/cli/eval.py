"""``csrinfer eval``: not built yet (issue 3, training core)."""

import argparse

from csrinfer.cli.common import not_built

HELP = "evaluate a checkpoint with COCO mask AP (not built yet)"


def add_arguments(p) -> None:
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


run = not_built("eval", "issue 3, training core")
