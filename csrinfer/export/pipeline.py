"""``csrinfer export``: checkpoint -> ``model.onnx`` -> (``model.plan`` where TensorRT exists).

The engine is built from the graph TensorRT wants (csrinfer/export/tensorrt.py): the D2SFused
plugin graph ``model.plugin.onnx`` (csrinfer/export/plugin_graph.py) unless ``plugin=False``, and
the FP16 graph ``model.fp16.onnx`` (csrinfer/export/fp16.py) when asked for or when an FP16 engine is
built (from that graph, strongly typed, on every TensorRT); ``model.onnx`` stays the standard graph
ONNX Runtime runs. For CPUs, ``model.int8.onnx`` is its calibrated QDQ INT8 form
(csrinfer/export/int8.py) and ``model.xml``/``model.bin`` (``model.int8.xml``) its OpenVINO IR
(csrinfer/runtime/backends/openvino.py).

One function, :func:`export_model`, does the whole job for the CLI and for library users;
its settings are one :class:`ExportOptions`, so a new export feature is a new field there, a
new flag in csrinfer/cli/export.py and, if it adds a step, a new step function here.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from csrinfer.errors import BackendUnavailableError, ExportError, first_line
from csrinfer.export.onnx import DEFAULT_OPSET, export_onnx
from csrinfer.contract.model_info import ModelInfo, producing_versions

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
        plugin: the engine's graph has D2SFused plugin nodes (``model[.fp16].plugin.onnx``).
        write_plugin: write the plugin graph even when no engine is built (``--plugin``).
        fp16_onnx: also write the FP16 graph ``model.fp16.onnx``; an FP16 engine is built from it.
        builder: keyword arguments of :func:`csrinfer.export.tensorrt.build_engine` (fp16, shapes, ...).
        int8_calib: a COCO-format dataset folder: also write ``model.int8.onnx``, calibrated on
            images of its ``calib_split`` (at least 16).
        openvino: also write OpenVINO IR ``model.xml`` + ``model.bin`` (and ``model.int8.xml``
            with ``int8_calib``).
    """

    out_dir: Path | None = None
    input_size: tuple[int, int] | None = None
    batch: int = 1
    dynamic: bool = False
    opset: int = DEFAULT_OPSET
    simplify: bool = True
    engine: bool = True
    plugin: bool = True
    write_plugin: bool = False
    fp16_onnx: bool = False
    builder: dict = field(default_factory=dict)
    int8_calib: Path | None = None
    calib_split: str = "train"
    openvino: bool = False


@dataclass
class ExportResult:
    """What was written: ``onnx`` always, ``engine`` when built; ``notes`` say what was not and why.

    ``graphs`` are the further ONNX files written for TensorRT (FP16, plugin).
    """

    onnx: Path
    info: ModelInfo
    engine: Path | None = None
    notes: list[str] = field(default_factory=list)
    graphs: list[Path] = field(default_factory=list)


def export_model(checkpoint, options: ExportOptions | None = None, cfg=None) -> ExportResult:
    """Export a checkpoint (or an in-memory ``CSRD2SNet`` with its ``cfg``) to ONNX and beyond.

    Example:
        >>> result = export_model("runs/train/model.pth", ExportOptions(input_size=(640, 640)))
        >>> Segmenter(result.onnx).predict("street.jpg")
    """
    options = options or ExportOptions()
    model, cfg, out_dir = _load(checkpoint, cfg, options.out_dir)
    size = options.input_size or cfg.input.export_size
    size = tuple(size) if isinstance(size, (tuple, list)) else (size,)
    _check(options, size, cfg.input.size_divisor)
    if options.int8_calib is not None:  # a missing or too small dataset is said before the export's minutes
        from csrinfer.export.int8 import calibration_files

        calibration_files(options.int8_calib, options.calib_split)
    info = ModelInfo.from_config(cfg, input_size=None if options.dynamic else size,
                                 batch=None if options.dynamic else options.batch,
                                 precision="fp32", versions=producing_versions(("onnxscript", "onnxslim")))
    try:
        onnx_path = export_onnx(model, out_dir / "model.onnx", input_size=size, batch=options.batch,
                                dynamic=options.dynamic, opset=options.opset, metadata=info.to_metadata(),
                                simplify=options.simplify)
    except (RuntimeError, ValueError, TypeError) as e:  # torch.export / onnx checker failures
        raise ExportError(f"export of {cfg.name} to ONNX failed ({first_line(e)})") from None
    result = ExportResult(onnx=onnx_path, info=info)
    cpu_graphs = [onnx_path]
    if options.int8_calib is not None:
        cpu_graphs.append(int8_onnx_step(onnx_path, options))
        result.graphs.append(cpu_graphs[-1])
    if options.openvino:
        result.graphs += [openvino_step(graph) for graph in cpu_graphs]
    building = options.engine and importlib.util.find_spec("tensorrt") is not None
    engine_graph = onnx_path
    if options.fp16_onnx or (building and _engine_wants_fp16_graph(options)):
        engine_graph = fp16_onnx_step(model, out_dir / "model.fp16.onnx", size, options, info)
        result.graphs.append(engine_graph)
    if options.plugin and (options.write_plugin or building):
        plugin_graph, note = plugin_onnx_step(engine_graph)
        if plugin_graph is not None:
            engine_graph = plugin_graph
            result.graphs.append(plugin_graph)
        if note:
            result.notes.append(note)
    if options.engine:
        result.engine, note = build_engine_step(engine_graph, options)
        if note:
            result.notes.append(note)
    stale = stale_products(out_dir, result)
    if stale:
        result.notes.append(f"left from an earlier export in {out_dir}, not rewritten now: {', '.join(stale)} "
                            "(delete them, or export to another --out)")
    return result


def stale_products(out_dir: Path, result: ExportResult) -> list[str]:
    """Export files in ``out_dir`` this export did not write: a model.plan beside a new model.onnx
    of another size would otherwise be taken for its engine."""
    written = {result.onnx, *result.graphs}
    if result.engine is not None:
        from csrinfer.contract.engine_sidecar import sidecar_path

        written |= {result.engine, sidecar_path(result.engine)}
    products = ("model.onnx", "model.fp16.onnx", "model.plugin.onnx", "model.fp16.plugin.onnx",
                "model.plan", "model.plan.json", "model.int8.onnx", "model.xml", "model.int8.xml")
    return [name for name in products if (out_dir / name).exists() and name not in {p.name for p in written}]


def fp16_onnx_step(model, path: Path, size, options: ExportOptions, info: ModelInfo) -> Path:
    """The FP16 graph (float16 network, float32 I/O and delicate parts) next to model.onnx."""
    from csrinfer.export.fp16 import export_fp16_onnx

    try:
        return export_fp16_onnx(model, path, input_size=size, batch=options.batch, dynamic=options.dynamic,
                                opset=options.opset, metadata=info.replace(precision="fp16").to_metadata(),
                                simplify=options.simplify)
    except (RuntimeError, ValueError, TypeError) as e:
        raise ExportError(f"export of the FP16 graph failed ({first_line(e)})") from None


def int8_onnx_step(onnx_path: Path, options: ExportOptions) -> Path:
    """``model.int8.onnx``: the calibrated QDQ INT8 graph next to model.onnx."""
    from csrinfer.export.int8 import quantize_int8

    return quantize_int8(onnx_path, onnx_path.with_name("model.int8.onnx"), options.int8_calib, options.calib_split)


def openvino_step(onnx_path: Path) -> Path:
    """OpenVINO IR (``.xml`` + ``.bin``) of an exported graph, its metadata in the IR's rt_info."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        raise BackendUnavailableError("--openvino needs OpenVINO (pip install 'csrinfer[openvino]')") from None
    from csrinfer.export.onnx import read_model_info
    from csrinfer.export.openvino import write_ir

    try:
        return write_ir(onnx_path, onnx_path.with_suffix(".xml"), read_model_info(onnx_path))
    except RuntimeError as e:  # OpenVINO's conversion errors
        raise ExportError(f"conversion of {onnx_path} to OpenVINO IR failed ({first_line(e)})") from None


def plugin_onnx_step(graph_path: Path) -> tuple[Path | None, str | None]:
    """``<graph>.plugin.onnx``: each D2S pair as one D2SFused node, checked against TensorRT's limits."""
    import onnx

    from csrinfer.atomic import atomic_write
    from csrinfer.export.plugin_graph import fuse_d2s
    from csrinfer.export.tensorrt import check_tensorrt_limits

    proto, count = fuse_d2s(onnx.load(str(graph_path)))
    if count == 0:
        return None, "no D2S blocks in this model (the FPN baseline?): its engine needs no plugin"
    check_tensorrt_limits(proto)
    onnx.checker.check_model(proto, full_check=True)
    path = graph_path.with_name(graph_path.name[: -len(".onnx")] + ".plugin.onnx")
    atomic_write(path, lambda tmp: onnx.save(proto, tmp))
    return path, None


def _engine_wants_fp16_graph(options: ExportOptions) -> bool:
    """An FP16 engine is built from the FP16 graph on every TensorRT (strongly typed networks)."""
    return bool(options.builder.get("fp16", True))


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
        return None, f"TensorRT engine not built: csrinfer.export.tensorrt cannot be imported ({first_line(e)})"
    try:
        plan = build_engine(onnx_path, onnx_path.with_name("model.plan"), **options.builder)
    except BackendUnavailableError as e:  # e.g. TensorRT present but no GPU
        return None, f"TensorRT engine not built: {e}"
    return Path(plan), None


def _load(checkpoint, cfg, out_dir):
    import torch

    if isinstance(checkpoint, torch.nn.Module):
        if cfg is None:
            raise ExportError("exporting an in-memory model needs its config (cfg=) for the class names and sizes")
        if len(cfg.classes) != checkpoint.head.num_classes:
            raise ExportError(f"cfg {cfg.name} has {len(cfg.classes)} classes but the model has "
                              f"{checkpoint.head.num_classes}; give the model's own config")
        return checkpoint.eval(), cfg, Path(out_dir or ".")
    if cfg is not None:
        raise ExportError("cfg= is for an in-memory model; a checkpoint carries its own config")
    from csrinfer.model.checkpoint import load_checkpoint

    model, cfg, _ = load_checkpoint(checkpoint)
    return model, cfg, Path(out_dir) if out_dir is not None else Path(checkpoint).parent


def _check(options: ExportOptions, size: tuple[int, ...], divisor: int) -> None:
    if len(size) != 2 or not all(isinstance(v, int) for v in size):
        raise ExportError(f"input size must be (height, width) in whole pixels, got {size}")
    h, w = size
    if h <= 0 or w <= 0 or h % divisor or w % divisor:
        raise ExportError(f"input size {h}x{w} must be positive multiples of {divisor} (e.g. 640x640)")
    if options.batch < 1:
        raise ExportError(f"batch must be at least 1, got {options.batch}")
    if options.opset < MIN_OPSET:
        raise ExportError(f"opset {options.opset} is too old; torch's exporter writes opset {MIN_OPSET} or newer")
    import onnx.defs

    newest = onnx.defs.onnx_opset_version()
    if options.opset > newest:
        raise ExportError(f"opset {options.opset} is newer than this onnx package knows (up to {newest})")

