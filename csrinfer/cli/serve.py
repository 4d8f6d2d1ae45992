"""``csrinfer serve``: not built yet (issue 9, Triton serving)."""

import argparse

from csrinfer.cli.common import not_built

HELP = "serve a model on Triton Inference Server (not built yet)"


def add_arguments(p) -> None:
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


run = not_built("serve", "issue 9, Triton serving")
