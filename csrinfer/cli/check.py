"""``csrinfer check``: not built yet (issue 4, export and runtime)."""

import argparse

from csrinfer.cli.common import not_built

HELP = "compare two backends on the same images (not built yet)"


def add_arguments(p) -> None:
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


run = not_built("check", "issue 4, export and runtime")
