"""Argument helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import re


def parse_hw(text: str) -> tuple[int, int]:
    """'800x1344' -> (800, 1344): height x width, as ``--input-size`` takes it."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX,]\s*(\d+)\s*", text)
    if not m or int(m.group(1)) <= 0 or int(m.group(2)) <= 0:
        raise argparse.ArgumentTypeError(f"'{text}' is not a size HxW such as 800x1344")
    return int(m.group(1)), int(m.group(2))


def setup_logging() -> None:
    """Show csrinfer's progress messages (INFO) and warnings on stderr, one plain line each."""
    import logging

    logger = logging.getLogger("csrinfer")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
