"""``csrinfer demo``: not built yet (issue 7, demo)."""

import argparse

from csrinfer.cli.common import not_built

HELP = "the whole pipeline on a fresh CPU machine in minutes (not built yet)"


def add_arguments(p) -> None:
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


run = not_built("demo", "issue 7, demo")
