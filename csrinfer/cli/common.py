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


def add_option(p, name: str, *old_names: str, **kwargs):
    """``p.add_argument(name, **kwargs)`` that also accepts ``old_names``, the spellings of earlier
    versions, without listing them in ``--help`` (one name per thing on screen; old scripts keep
    working). The aliases are kept on the action as ``old_names`` for the docs test."""
    action = p.add_argument(name, *old_names, **kwargs)
    action.option_strings = [name]  # what help and messages show; parsing still knows every spelling
    action.old_names = old_names
    return action


def add_model_argument(p, *old_names: str, required: bool = True, help: str | None = None):
    """``--model FILE``, the model file in every command (old spellings: ``old_names``)."""
    return add_option(p, "--model", *old_names, required=required, metavar="FILE",
                      help=help or "model file: .pth/.pt checkpoint, .onnx, or .plan/.engine (TensorRT)")


def add_fast_path_arguments(p) -> None:
    """The PyTorch backend's speed switches, the same in ``predict``, ``bench`` and ``check``."""
    g = p.add_argument_group("speed (PyTorch .pth/.pt models)")
    g.add_argument("--fast", action="store_true",
                   help="on CUDA, every GPU fast-path switch: FP16, channels_last, fused D2S kernel, CUDA graphs, "
                        "GPU pre-processing (on a CPU they do nothing, with a warning)")
    g.add_argument("--fp16", action="store_true", help="on CUDA, an FP16 network (BatchNorms folded first)")
    g.add_argument("--cuda-graph", action="store_true", help="on CUDA, replay the network as a CUDA graph")
    g.add_argument("--compile", action="store_true",
                   help="run the network through torch.compile (with --fast: in place of CUDA graphs)")


FAST_PATH_FLAGS = ("fast", "fp16", "cuda_graph", "compile")


def fast_path_flags_given(args) -> list[str]:
    """The speed flags on the command line, as typed: ``["--fast", "--compile"]``."""
    return [f"--{flag.replace('_', '-')}" for flag in FAST_PATH_FLAGS if getattr(args, flag, False)]


def fast_path_from_args(args, model):
    """The :class:`~csrinfer.runtime.fastpath.FastPathOptions` the speed flags ask for, or None
    when none is given (every backend's default). Refused for a model that is not PyTorch."""
    given = fast_path_flags_given(args)
    if not given:
        return None
    from csrinfer.errors import ConfigError
    from csrinfer.runtime.fastpath import FastPathOptions

    if model is None or Path(model).suffix.lower() not in (".pth", ".pt"):
        raise ConfigError(f"{' and '.join(given)} {'is a switch' if len(given) == 1 else 'are switches'} of PyTorch "
                          f"models (.pth/.pt); {model} is not one (a TensorRT engine is the fastest form of a model)")
    switches = FastPathOptions.all_on().as_dict() if args.fast else {}
    if args.compile and not args.cuda_graph:  # torch.compile replaces the graph --fast would capture
        switches["cuda_graph"] = False
    switches.update({flag: True for flag in ("fp16", "cuda_graph", "compile") if getattr(args, flag)})
    return FastPathOptions(**switches)
