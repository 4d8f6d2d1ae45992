"""ONNX -> TensorRT engine: the builder behind ``csrinfer build`` and ``csrinfer export`` (design.md §2-3).

One function, :func:`build_engine`, in the order of NVIDIA's samples (samples/python/detectron2/
build_engine.py): parse the ONNX graph, configure the builder, build, save the plan. Around it:

- one FP16 path on every TensorRT: a strongly typed network built from the FP16 ONNX of
  csrinfer/export/fp16.py, each tensor's type taken from the graph. TensorRT 10.12 deprecated
  weak typing (``BuilderFlag.FP16``, layer precisions, ``set_output_type``,
  ``OBEY_PRECISION_CONSTRAINTS``) and TensorRT 11 removed it, so an FP32 graph asked for FP16 is
  refused with the command that writes the FP16 graph;
- an optimisation profile (min/opt/max) for dynamic input shapes, a workspace limit, a timing
  cache that is read before and saved after every build, the builder optimisation level, and
  optional version-compatible / hardware-compatible engines;
- ONNX parser errors reported node by node, and every failure raised as one
  :class:`csrinfer.errors.ExportError` sentence (never ``sys.exit``);
- the ``model.plan.json`` sidecar (csrinfer/contract/engine_sidecar.py).

Every TensorRT name, signature and property write used here is checked against the real Python
bindings of TensorRT 10 and 11 (tests/export/test_tensorrt_conformance.py); parsing, building
and the engine's numbers need a GPU with TensorRT and have not run on this project's machines.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from csrinfer.errors import ExportError
from csrinfer.contract.graph import INPUT_NAME
TOPK_MAX = 3840  # TensorRT's ITopKLayer keeps at most 3840 elements (ITopKLayer docs, "K ... <= 3840")
DEFAULT_WORKSPACE_GIB = 4.0
DEFAULT_OPT_LEVEL = 3  # TensorRT's own default; 0 builds fastest, 5 searches longest
# Dynamic-shape profile when none is given: any letterboxed COCO image (short side 800, long side
# at most 1333, padded to multiples of 32) fits between min and max.
DEFAULT_MIN_HW, DEFAULT_OPT_HW, DEFAULT_MAX_HW = (32, 32), (800, 1344), (1344, 1344)


@dataclass(frozen=True)
class ShapeProfile:
    """One input's optimisation profile: min <= opt <= max, dimension by dimension."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def __post_init__(self):
        if not len(self.min) == len(self.opt) == len(self.max):
            raise ValueError(f"profile shapes of different ranks: {_fmt(self.min)}, {_fmt(self.opt)}, {_fmt(self.max)}")
        for lo, mid, hi in zip(self.min, self.opt, self.max):
            if not 0 < lo <= mid <= hi:
                raise ValueError(f"profile needs 0 < min <= opt <= max in every dimension, got min {_fmt(self.min)}, "
                                 f"opt {_fmt(self.opt)}, max {_fmt(self.max)}")

    def contains(self, shape: Sequence[int]) -> bool:
        return len(shape) == len(self.min) and all(lo <= s <= hi for lo, s, hi in zip(self.min, shape, self.max))

    def to_json(self) -> dict:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


def parse_shape(text: str, name: str = INPUT_NAME) -> tuple[int, ...]:
    """'1x3x800x1344' (or trtexec's 'images:1x3x800x1344') -> (1, 3, 800, 1344).

    Raises ValueError with the expected form.
    """
    text = text.strip()
    if ":" in text:
        given, text = text.split(":", 1)
        if given.strip() != name:
            raise ValueError(f"shape '{given}:{text}' names input '{given.strip()}' but the model's input is '{name}'")
    if not re.fullmatch(r"\s*\d+(\s*[xX]\s*\d+)*\s*", text):
        raise ValueError(f"'{text}' is not a shape such as 1x3x800x1344 (N x C x H x W)")
    dims = tuple(int(d) for d in re.split(r"[xX]", text.replace(" ", "")))
    if any(d <= 0 for d in dims):
        raise ValueError(f"shape '{text}' has a zero dimension")
    return dims


def resolve_profile(graph_shape: Sequence, min_shape=None, opt_shape=None, max_shape=None,
                    opt_hw: Sequence[int] | None = None) -> ShapeProfile:
    """The profile for an input whose ONNX shape is ``graph_shape`` (ints, or str/None for dynamic dims).

    A static input takes its own shape (given shapes must equal it). A dynamic one takes the given
    shapes; what is not given defaults to batch 1 and H x W from 32x32 (min) over ``opt_hw``
    (default 800x1344) to 1344x1344 (max). Every shape must agree with the graph's static dims.
    """
    given = {"min": min_shape, "opt": opt_shape, "max": max_shape}
    rank = len(graph_shape)
    static = [d if isinstance(d, int) and d > 0 else None for d in graph_shape]
    if all(d is not None for d in static):
        for key, shape in given.items():
            if shape is not None and tuple(shape) != tuple(static):
                raise ExportError(f"the graph's input is static {_fmt(static)}, so --{key}-shape {_fmt(shape)} cannot "
                                  f"apply; export with --dynamic for other shapes")
        return ShapeProfile(tuple(static), tuple(static), tuple(static))
    if rank != 4:
        raise ExportError(f"expected a 4-D image input [N, 3, H, W], the graph's input has shape {graph_shape}")
    defaults = {"min": (1, 3, *DEFAULT_MIN_HW), "opt": (1, 3, *(opt_hw or DEFAULT_OPT_HW)),
                "max": (given["opt"][0] if given["opt"] else 1, 3, *DEFAULT_MAX_HW)}
    shapes = {}
    for key in ("min", "opt", "max"):
        shape = given[key]
        if shape is None:  # a default: the graph's static dims win
            shape = tuple(d if d is not None else v for d, v in zip(static, defaults[key]))
        shape = tuple(shape)
        if len(shape) != rank:
            raise ExportError(f"--{key}-shape {_fmt(shape)} has {len(shape)} dimensions, the input has {rank}")
        fixed = [(i, d, v) for i, (d, v) in enumerate(zip(static, shape)) if d is not None and d != v]
        if fixed:
            i, d, v = fixed[0]
            raise ExportError(f"--{key}-shape {_fmt(shape)} sets dimension {i} to {v}, but the graph fixes it to {d}")
        shapes[key] = shape
    try:
        return ShapeProfile(shapes["min"], shapes["opt"], shapes["max"])
    except ValueError as e:
        raise ExportError(str(e)) from None


def check_tensorrt_limits(proto) -> None:
    """Raise ExportError if the graph asks TensorRT for more than it can do (TopK k <= 3840).

    The in-graph post-processing keeps ``nms_pre`` candidates and ``max_per_img`` instances
    with TopK; SOLOv2's 500 and 100 are well inside the limit, a larger ``nms_pre`` is not.
    """
    from onnx import numpy_helper

    constants = {t.name: t for t in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value" and a.HasField("t"):
                    constants[node.output[0]] = a.t
    for node in proto.graph.node:
        if node.op_type != "TopK" or len(node.input) < 2 or node.input[1] not in constants:
            continue
        k = int(numpy_helper.to_array(constants[node.input[1]]).reshape(-1)[0])
        if k > TOPK_MAX:
            raise ExportError(f"TopK node '{node.name}' keeps {k} elements but TensorRT's TopK keeps at most "
                              f"{TOPK_MAX}; lower the config's inference.nms_pre (or max_per_img) and export again")


def default_timing_cache(tensorrt_version: str, gpu_name: str) -> Path:
    """~/.cache/csrinfer/tensorrt-<version>-<gpu>.timing: a cache is valid for one TensorRT and GPU."""
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "csrinfer"
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", gpu_name).strip("-").lower()
    return root / f"tensorrt-{tensorrt_version}-{gpu}.timing"


def build_engine(onnx_path: str | os.PathLike, plan_path: str | os.PathLike | None = None, *, fp16: bool = True,
                 min_shape: Sequence[int] | None = None, opt_shape: Sequence[int] | None = None,
                 max_shape: Sequence[int] | None = None, workspace_gib: float = DEFAULT_WORKSPACE_GIB,
                 timing_cache: str | os.PathLike | bool = True, opt_level: int = DEFAULT_OPT_LEVEL,
                 version_compatible: bool = False, hardware_compatible: bool = False,
                 verbose: bool = False) -> Path:
    """Build a TensorRT engine from an ONNX graph; write ``plan_path`` and ``plan_path``.json.

    Args:
        onnx_path: the graph (standard ops, or with D2SFused plugin nodes; FP32 or FP16).
        plan_path: where the engine goes (default: the ONNX path with suffix ``.plan``).
        fp16: build an FP16 engine; the graph must then be the FP16 ONNX (``--fp16-onnx``).
        min_shape, opt_shape, max_shape: the optimisation profile of a dynamic graph's input
            (N, 3, H, W); defaults in :func:`resolve_profile`.
        workspace_gib: memory TensorRT's tactics may use as scratch space.
        timing_cache: True for the default cache file, a path, or False for none.
        opt_level: builder optimisation level 0-5.
        version_compatible: the engine also runs on later TensorRT versions (slower to load).
        hardware_compatible: the engine runs on every Ampere or newer GPU, not only this one's kind.
        verbose: TensorRT's verbose log.
    Returns:
        the plan path.

    Example:
        >>> build_engine("model.onnx", "model.plan", fp16=True)
        PosixPath('model.plan')
    """
    import onnx

    from csrinfer.export.onnx import read_metadata
    from csrinfer.export.plugin_graph import custom_ops, fused_nodes
    from csrinfer.contract.engine_sidecar import EngineRecord, utc_now, write_sidecar
    from csrinfer.tensorrt_env import gpu, import_tensorrt, make_logger

    onnx_path = Path(onnx_path)
    plan_path = Path(plan_path) if plan_path is not None else onnx_path.with_suffix(".plan")
    if not onnx_path.is_file():
        raise ExportError(f"ONNX file {onnx_path} does not exist")
    if not 0 <= opt_level <= 5:
        raise ExportError(f"builder optimisation level must be 0-5, got {opt_level}")
    try:
        proto = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as e:  # protobuf raises DecodeError and others on foreign bytes
        raise ExportError(f"{onnx_path} is not a readable ONNX file ({type(e).__name__})") from None
    check_tensorrt_limits(proto)
    trt = import_tensorrt()
    device = gpu()
    if hardware_compatible and device.compute_capability < (8, 0):
        raise ExportError(f"hardware-compatible engines need an Ampere or newer GPU to build on; {device.name} is "
                          f"compute capability {device.compute_capability[0]}.{device.compute_capability[1]}")
    precision = _precision(proto, fp16, onnx_path.name)
    if fused_nodes(proto):
        _register_plugin(version_compatible, hardware_compatible)

    logger = make_logger(trt, verbose)
    builder = trt.Builder(logger)
    network = builder.create_network(_strongly_typed_flags(trt))
    parser = trt.OnnxParser(network, logger)
    _parse(parser, onnx_path, trt.__version__)
    config = builder.create_builder_config()
    profile = _input_profile(network, min_shape, opt_shape, max_shape, read_metadata(proto))
    if any(d < 0 for d in network.get_input(0).shape):
        # TensorRT Python API: IOptimizationProfile.set_shape(input, min, opt, max)
        trt_profile = builder.create_optimization_profile()
        trt_profile.set_shape(network.get_input(0).name, profile.min, profile.opt, profile.max)
        config.add_optimization_profile(trt_profile)
    _configure(trt, config, workspace_gib, opt_level, version_compatible, hardware_compatible)
    cache_path = None
    if timing_cache:
        cache_path = (default_timing_cache(trt.__version__, device.name) if timing_cache is True
                      else Path(timing_cache))
        _load_timing_cache(config, cache_path, logger)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT {trt.__version__} could not build an engine from {onnx_path.name}: "
                          f"{logger.first_error() or 'no reason given; rerun with --verbose'}")
    from csrinfer import atomic

    atomic.write_bytes(plan_path, memoryview(serialized))
    if cache_path is not None:
        _save_timing_cache(config, cache_path)
    record = EngineRecord(
        tensorrt_version=trt.__version__, gpu_name=device.name, compute_capability=device.compute_capability,
        precision=precision, input_shapes={network.get_input(0).name: profile.to_json()}, plugins=custom_ops(proto),
        version_compatible=version_compatible,
        hardware_compatibility="ampere_plus" if hardware_compatible else "none",
        onnx=onnx_path.name, onnx_sha256=_sha256(onnx_path), built=utc_now(),
        options={"workspace_gib": workspace_gib, "opt_level": opt_level,
                 "typing": "strong",
                 "timing_cache": str(cache_path) if cache_path else None})
    write_sidecar(plan_path, read_metadata(proto), record)
    return plan_path


def _register_plugin(version_compatible: bool, hardware_compatible: bool) -> None:
    if version_compatible:
        raise ExportError("a version-compatible engine cannot carry the D2SFused plugin here; export with "
                          "--no-plugin to build one")
    from csrinfer.plugins.tensorrt_plugin import register

    # hardware-compatible engines run on any Ampere or newer GPU: PTX for sm_80 runs on all of them
    register(arch="compute_80" if hardware_compatible else None)


def _precision(proto, fp16: bool, name: str) -> str:
    """The engine's precision, which a strongly typed network takes from the graph."""
    from csrinfer.export.fp16 import graph_precision

    graph = graph_precision(proto)
    if fp16 and graph != "fp16":
        raise ExportError(f"{name} is an FP32 graph, and TensorRT builds FP16 engines only from an FP16 graph "
                          f"(strongly typed networks; weak typing is deprecated since TensorRT 10.12 and gone in "
                          f"11): export it with `csrinfer export --model CKPT --fp16-onnx` and build "
                          f"model.fp16.onnx, or build with --fp32")
    return graph


def _strongly_typed_flags(trt) -> int:
    # NetworkDefinitionCreationFlag.STRONGLY_TYPED: opt-in on TensorRT 10, the only mode of 11 (where the
    # flag stays and is accepted); its bit differs between them (1 in 10.x, 0 in 11.x).
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def _parse(parser, onnx_path: Path, version: str) -> None:
    """Parse the graph; on failure one ExportError listing every rejected node."""
    # OnnxParser.parse_from_file reads external weights relative to the model file.
    if parser.parse_from_file(str(onnx_path)):
        return
    problems = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        # IParserError: node() index, node_name(), node_operator(), desc() (TensorRT Python API, Onnx Parser)
        op, name, desc = err.node_operator(), err.node_name(), err.desc().strip().rstrip(".")
        if op == "D2SFused" and "plugin" in desc.lower():
            problems.append(f"node {err.node()} '{name}' needs the plugin csrinfer::D2SFused, which is not "
                            f"registered ({desc})")
        elif err.node() >= 0:
            problems.append(f"node {err.node()} '{name}' ({op}) is not supported: {desc}")
        else:
            problems.append(desc)
    raise ExportError(f"TensorRT {version} cannot parse {onnx_path.name}: " + "; ".join(problems or ["unknown error"]))


def _input_profile(network, min_shape, opt_shape, max_shape, metadata: dict) -> ShapeProfile:
    if network.num_inputs != 1:
        raise ExportError(f"expected one input '{INPUT_NAME}', the graph has {network.num_inputs}")
    tensor = network.get_input(0)
    graph_shape = [d if d >= 0 else None for d in tensor.shape]
    opt_hw = metadata.get("input_size") or None
    return resolve_profile(graph_shape, min_shape, opt_shape, max_shape, opt_hw=opt_hw)


def _configure(trt, config, workspace_gib: float, opt_level: int, version_compatible: bool,
               hardware_compatible: bool) -> None:
    # IBuilderConfig.set_memory_pool_limit(MemoryPoolType.WORKSPACE, bytes) replaced max_workspace_size in 8.4.
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    config.builder_optimization_level = opt_level
    if version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if hardware_compatible:
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS


def _load_timing_cache(config, path: Path, logger) -> None:
    """Read the cache at ``path`` (a new one if there is none, or if it is another TensorRT's or GPU's).

    IBuilderConfig.create_timing_cache(serialized) returns None and set_timing_cache(cache,
    ignore_mismatch) returns False when TensorRT rejects a cache; an empty buffer makes a new one.
    """
    data = path.read_bytes() if path.is_file() else b""
    if _attach_timing_cache(config, data):
        return
    if data:
        warnings.warn(f"timing cache {path} belongs to another TensorRT or GPU; starting a new one", stacklevel=3)
        if _attach_timing_cache(config, b""):
            return
    raise ExportError(f"TensorRT could not create a timing cache ({logger.first_error() or 'no reason given'}); "
                      f"build without one (--no-timing-cache)")


def _attach_timing_cache(config, data: bytes) -> bool:
    cache = config.create_timing_cache(data)
    return cache is not None and bool(config.set_timing_cache(cache, ignore_mismatch=False))


def _save_timing_cache(config, path: Path) -> None:
    from csrinfer import atomic

    cache = config.get_timing_cache()
    if cache is not None:
        atomic.write_bytes(path, memoryview(cache.serialize()))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fmt(shape) -> str:
    return "x".join(str(d) for d in shape)
