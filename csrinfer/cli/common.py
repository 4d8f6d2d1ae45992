"""Argument helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import re
from pathlib import Path


def parse_hw(text: str) -> tuple[int, int]:
    """'800x1344' -> (800, 1344): height x width, as ``--input-size`` takes it."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX,]\s*(\d+)\s*", text)
    if not m or int(m.group(1)) <= 0 or int(m.group(2)) <= 0:
        raise argparse.ArgumentTypeError(f"'{text}' is not a size HxW such as 800x1344")
    return int(m.group(1)), int(m.group(2))


def _number(kind, low: float, words: str):
    """An argparse type: ``kind`` of the text, refused below ``low`` (0 or -1 is never a count)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"'{text}' is not {words}")
        return value
    parse.__name__ = words  # argparse names the type in its own messages
    return parse


positive_int = _number(int, 1, "a whole number of at least 1")
non_negative_int = _number(int, 0, "a whole number of at least 0")
positive_float = _number(float, 1e-9, "a number above 0")
non_negative_float = _number(float, 0, "a number of at least 0")


def output_file(*suffixes: str):
    """An argparse type for a file to write: one of ``suffixes``, not a folder. Checked before
    the work, so that a long run never ends on a path it cannot write (or on a checkpoint
    overwritten by a results file)."""
    def parse(text: str) -> str:
        path = Path(text)
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"'{text}' is a folder; give a file name ending in {suffixes[0]}")
        if path.suffix.lower() not in suffixes:
            raise argparse.ArgumentTypeError(f"'{text}' should end in {' or '.join(suffixes)}")
        return text
    parse.__name__ = f"{suffixes[0]} file"
    return parse


def output_folder(text: str) -> str:
    """An argparse type for a folder to write into: refused before the work when it, or a folder
    above it, is a file."""
    from csrinfer.errors import file_in_the_way

    sentence = file_in_the_way(text)
    if sentence:
        raise argparse.ArgumentTypeError(sentence)
    return text


output_folder.__name__ = "folder"


def next_free_folder(base: str | Path) -> Path:
    """``base``, or ``base2``, ``base3``, ... when it already holds files: a default output
    folder never takes over an earlier run's results (Ultralytics' runs/predict, predict2)."""
    base = Path(base)
    path, n = base, 1
    while path.exists() and (not path.is_dir() or any(path.iterdir())):
        n += 1
        path = base.with_name(f"{base.name}{n}")
    return path


def add_runtime_arguments(p, which: str = "the model") -> None:
    """``--runtime`` and ``--precision``, the same in predict, bench and check."""
    p.add_argument("--runtime", choices=("onnxruntime", "openvino"), default=None,
                   help=f"runtime for {which} when it is .onnx (default: onnxruntime; .xml is always openvino)")
    p.add_argument("--precision", choices=("f32", "bf16"), default=None,
                   help="OpenVINO's inference precision (default: OpenVINO's for this CPU, bf16 where it has it)")


def runtime_options(args) -> dict:
    """Segmenter keyword arguments for ``--runtime``/``--precision``."""
    options = {"runtime": args.runtime} if args.runtime else {}
    if args.precision:
        options["precision"] = args.precision
    return options


def setup_logging() -> None:
    """Show csrinfer's progress messages (INFO) and warnings on stderr, one plain line each."""
    import logging

    logger = logging.getLogger("csrinfer")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
