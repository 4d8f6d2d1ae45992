"""``csrinfer bench``: not built yet (issue 7, benchmarks)."""

import argparse

from csrinfer.cli.common import not_built

HELP = "measure FPS, latency and mask AP of a model file (not built yet)"


def add_arguments(p) -> None:
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


run = not_built("bench", "issue 7, benchmarks")
