"""``csrinfer export``: checkpoint -> ``model.onnx`` -> (``model.plan`` where TensorRT exists).

One function, :func:`export_model`, does the whole job for the CLI and for library users;
its settings are one :class:`ExportOptions`, so a new export feature is a new field there, a
new flag in csrinfer/cli/export.py and, if it adds a step, a new step function here.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from csrinfer.errors import BackendUnavailableError, ExportError
from csrinfer.export.onnx import DEFAULT_OPSET, export_onnx
from csrinfer.runtime.model_info import ModelInfo, producing_versions

MIN_OPSET = 18  # the lowest opset torch's dynamo exporter writes


@dataclass
class ExportOptions:
    """What ``csrinfer export`` writes.

    Attributes:
        out_dir: folder for model.onnx (and model.plan); default: the checkpoint's folder.
        input_size: (H, W), multiples of 32; default: the config's ``input.export_size``. The
            static input shape, or the example shape of a dynamic export.
        batch: the static batch size (ignored with ``dynamic``).
        dynamic: batch, H and W free in the graph.
        opset: ONNX opset.
        simplify: constant folding and fusion with onnxslim.
        engine: go on to build a TensorRT engine when TensorRT is importable here.
    """

    out_dir: Path | None = None
    input_size: tuple[int, int] | None = None
    batch: int = 1
    dynamic: bool = False
    opset: int = DEFAULT_OPSET
    simplify: bool = True
    engine: bool = True


@dataclass
class ExportResult:
    """What was written: ``onnx`` always, ``engine`` when built; ``notes`` say what was not and why."""

    onnx: Path
    info: ModelInfo
    engine: Path | None = None
    notes: list[str] = field(default_factory=list)


def export_model(checkpoint, options: ExportOptions | None = None, cfg=None) -> ExportResult:
    """Export a checkpoint (or an in-memory ``CSRD2SNet`` with its ``cfg``) to ONNX and beyond.

    Example:
        >>> result = export_model("runs/train/model.pth", ExportOptions(input_size=(640, 640)))
        >>> Segmenter(result.onnx).predict("street.jpg")
    """
    options = options or ExportOptions()
    model, cfg, out_dir = _load(checkpoint, cfg, options.out_dir)
    size = tuple(options.input_size or cfg.input.export_size)
    _check(options, size, cfg.input.size_divisor)
    info = ModelInfo.from_config(cfg, input_size=None if options.dynamic else size,
                                 batch=None if options.dynamic else options.batch,
                                 precision="fp32", versions=producing_versions(("onnxscript", "onnxslim")))
    try:
        onnx_path = export_onnx(model, out_dir / "model.onnx", input_size=size, batch=options.batch,
                                dynamic=options.dynamic, opset=options.opset, metadata=info.to_metadata(),
                                simplify=options.simplify)
    except (RuntimeError, ValueError, TypeError) as e:  # torch.export / onnx checker failures
        raise ExportError(f"export of {cfg.name} to ONNX failed ({_first_line(e)})") from None
    result = ExportResult(onnx=onnx_path, info=info)
    if options.engine:
        result.engine, note = build_engine_step(onnx_path, options)
        if note:
            result.notes.append(note)
    return result


def build_engine_step(onnx_path: Path, options: ExportOptions) -> tuple[Path | None, str | None]:
    """The TensorRT engine next to the ONNX file, or (None, one line saying why not).

    The builder (csrinfer/export/tensorrt.py) is imported only when TensorRT is importable.
    """
    if importlib.util.find_spec("tensorrt") is None:
        return None, ("TensorRT engine not built: TensorRT is not installed here "
                      "(pip install 'csrinfer[trt]' on a machine with an NVIDIA GPU); the ONNX file is complete")
    try:
        from csrinfer.export.tensorrt import build_engine
    except ImportError as e:
        return None, f"TensorRT engine not built: csrinfer.export.tensorrt cannot be imported ({_first_line(e)})"
    try:
        plan = build_engine(onnx_path, onnx_path.with_name("model.plan"))
    except BackendUnavailableError as e:  # e.g. TensorRT present but no GPU
        return None, f"TensorRT engine not built: {e}"
    return Path(plan), None


def _load(checkpoint, cfg, out_dir):
    import torch

    if isinstance(checkpoint, torch.nn.Module):
        if cfg is None:
            raise ExportError("exporting an in-memory model needs its config (cfg=) for the class names and sizes")
        return checkpoint.eval(), cfg, Path(out_dir or ".")
    from csrinfer.checkpoint import load_checkpoint

    model, cfg, _ = load_checkpoint(checkpoint)
    return model, cfg, Path(out_dir) if out_dir is not None else Path(checkpoint).parent


def _check(options: ExportOptions, size: tuple[int, int], divisor: int) -> None:
    h, w = size
    if h <= 0 or w <= 0 or h % divisor or w % divisor:
        raise ExportError(f"input size {h}x{w} must be positive multiples of {divisor} (e.g. 640x640)")
    if options.batch < 1:
        raise ExportError(f"batch must be at least 1, got {options.batch}")
    if options.opset < MIN_OPSET:
        raise ExportError(f"opset {options.opset} is too old; torch's exporter writes opset {MIN_OPSET} or newer")


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]
