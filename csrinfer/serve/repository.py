"""Triton model repositories for csrinfer models.

Two layouts, both speaking :mod:`csrinfer.serve.protocol` under the model name ``name``:

``write_serve_repo`` — what ``csrinfer serve`` runs: one Python-backend model around
:class:`csrinfer.Segmenter`, so any model file works (``.pth``, ``.onnx``, ``.plan``)::

    repo/csrinfer/config.pbtxt, 1/model.py, 1/<model file>

``write_triton_repo`` — what ``csrinfer export --triton-repo`` writes for NVIDIA's Triton
container: the exported engine runs natively (``tensorrt_plan`` or ``onnxruntime_onnx``),
with pre- and post-processing as Python-backend models and an ensemble in front::

    repo/csrinfer/              ensemble: image -> instances
    repo/csrinfer_preprocess/   Python: decode + letterbox -> images, letterbox
    repo/csrinfer_engine/       1/model.plan or 1/model.onnx, config from the file's own I/O
    repo/csrinfer_postprocess/  Python: graph outputs + letterbox -> instances

Each ``model.py`` is a few lines that import the real class from
:mod:`csrinfer.serve.triton_models`; pre- and post-processing are csrinfer's own. Triton's
Python stub runs an isolated interpreter that ignores ``PYTHONPATH``, so ``model.py`` puts
``python_paths`` at the front of ``sys.path`` before importing anything else: for
``csrinfer serve``, the folder holding this csrinfer and this interpreter's site-packages
(:func:`local_python_paths`); for NVIDIA's container, none (csrinfer is installed there).
"""

from __future__ import annotations

import json
import os
import shutil
import site
from collections.abc import Mapping, Sequence
from pathlib import Path

from csrinfer.errors import ConfigError, ExportError, ModelFileError
from csrinfer.runtime.backends import BACKENDS, read_model_info
from csrinfer.contract.engine_sidecar import sidecar_path
from csrinfer.serve import model_config as mc
from csrinfer.serve import protocol

DEFAULT_NAME = "csrinfer"
PLATFORMS = {".onnx": ("onnxruntime_onnx", "model.onnx"), ".plan": ("tensorrt_plan", "model.plan"),
             ".engine": ("tensorrt_plan", "model.plan")}
SERVE_SUFFIXES = tuple(BACKENDS)  # csrinfer serve runs whatever Segmenter runs
KINDS = ("KIND_GPU", "KIND_CPU", "KIND_AUTO", "KIND_MODEL")

MODEL_PY = '''"""Triton Python-backend model written by csrinfer: {role}.

The code is csrinfer's own ({module}.{cls}); this file only makes it importable.
"""

import site
import sys

# Triton's Python stub ignores PYTHONPATH. These folders go first on sys.path: the one holding
# csrinfer, as is, then site-packages folders with their .pth files (both empty when csrinfer
# is installed in the Python that Triton runs).
PATHS = {paths}
SITE_DIRS = {site_dirs}
_before = list(sys.path)
for _dir in SITE_DIRS:
    site.addsitedir(_dir)
sys.path[:] = PATHS + [p for p in sys.path if p not in _before] + _before

from {module} import {cls} as TritonPythonModel  # noqa: E402,F401
'''


def local_python_paths() -> dict[str, list[str]]:
    """Where this Python finds csrinfer and its packages, as ``model.py`` takes them.

    The folder holding csrinfer goes on ``sys.path`` as is: a source checkout may hold ``.pth``
    checkpoints that ``site.addsitedir`` would read as path files.
    """
    import csrinfer

    from csrinfer.serve.server import stub_numpy_dir

    numpy_dir = stub_numpy_dir()  # NumPy 1.x for the stub, before site-packages (see server.py)
    return {"paths": [str(Path(csrinfer.__file__).resolve().parents[1])],
            "site_dirs": ([str(numpy_dir)] if numpy_dir else []) + site.getsitepackages()}


def write_serve_repo(model_file: str | os.PathLike, repo_dir: str | os.PathLike, *, name: str = DEFAULT_NAME,
                     instances: int = 1, max_batch: int = 8, dynamic_batching: bool = True,
                     queue_delay_us: int = 2000, device: str | None = None,
                     python_paths: Mapping | None = None) -> Path:
    """A repository whose one model, ``name``, is a Python-backend ``Segmenter`` on ``model_file``.

    The model file (and a ``.plan``'s ``.json`` sidecar) is hard-linked, or copied, into the
    version folder, so the repository stands alone. ``max_batch`` is the most requests the
    dynamic batcher joins (one ``Segmenter.predict_batch``); ``instances`` run in parallel, each
    with its own model; ``python_paths`` default to :func:`local_python_paths`. Returns the
    model's folder.

    Example:
        >>> write_serve_repo("model.onnx", "repo", instances=2, max_batch=8)
    """
    model_file = _existing(model_file, SERVE_SUFFIXES)
    info = read_model_info(model_file)
    _check_arguments(instances, max_batch, python_paths=python_paths)
    model_dir = Path(repo_dir) / name
    version = _fresh_version_dir(model_dir)
    _link_or_copy(model_file, version / model_file.name)
    sidecar = sidecar_path(model_file)
    if sidecar.exists():
        _link_or_copy(sidecar, version / sidecar.name)
    inputs = [mc.tensor(n, *protocol.INPUT_SPECS[n], optional=True) for n in (protocol.IMAGE, protocol.IMAGE_RAW)]
    config = mc.python_model(name, inputs, _protocol_outputs(), max_batch, instances, dynamic_batching,
                             queue_delay_us, parameters={"model_file": model_file.name, "device": device or "",
                                                         **_class_parameters(info)})
    _write_model(model_dir, config, "Segmenter around " + model_file.name, "SegmenterModel", python_paths)
    return model_dir


def write_triton_repo(model_file: str | os.PathLike, repo_dir: str | os.PathLike, *, name: str = DEFAULT_NAME,
                      max_batch: int = 8, instances: int = 1, kind: str = "KIND_GPU",
                      dynamic_batching: bool = True, queue_delay_us: int = 2000,
                      python_paths: Mapping | None = None) -> Path:
    """An ensemble repository for NVIDIA's Triton container around an exported ``.onnx`` or ``.plan``.

    The engine's ``config.pbtxt`` comes from the file itself: input/output names, data types
    and dims from the ONNX graph (a ``.plan``: from its ``model.plan.json`` sidecar), batching
    from its batch dimension (dynamic: ``max_batch`` with dynamic batching; static 1: no
    batching). ``kind`` places the engine's ``instances`` (``KIND_GPU``/``KIND_CPU``);
    ``python_paths`` (default: none) is for a Triton whose Python lacks csrinfer. Returns the
    repository folder.

    Example:
        >>> write_triton_repo("export/model.plan", "triton_repo", max_batch=16, instances=2)
    """
    model_file = _existing(model_file, tuple(PLATFORMS))
    info = read_model_info(model_file)
    _check_arguments(instances, max_batch, kind, python_paths)
    platform, filename = PLATFORMS[model_file.suffix.lower()]
    engine_in, engine_out, batch = engine_io(model_file, info)
    if batch not in (None, 1):
        raise ExportError(f"{model_file} has a static batch of {batch}; Triton feeds it one request at a "
                          f"time, so export it with a dynamic batch (csrinfer export --dynamic) or batch 1")
    mbs = max_batch if batch is None else 0
    repo = Path(repo_dir)
    names = {k: f"{name}_{k}" for k in ("preprocess", "engine", "postprocess")}
    params = {"model_info": info.to_metadata()}

    version = _fresh_version_dir(repo / names["engine"])
    _link_or_copy(model_file, version / filename)
    engine = mc.engine_model(names["engine"], platform, engine_in, engine_out, mbs, instances, kind,
                             dynamic_batching, queue_delay_us)
    (repo / names["engine"] / "config.pbtxt").write_text(mc.to_pbtxt(engine) + "\n")

    image = [_batched(mc.tensor(protocol.IMAGE, *protocol.INPUT_SPECS[protocol.IMAGE]), mbs)]
    letterbox = _batched(mc.tensor("letterbox", "TYPE_INT32", [6]), mbs)
    outputs = [_batched(t, mbs) for t in _protocol_outputs()]
    pre = mc.python_model(names["preprocess"], image, [engine_in[0], letterbox], mbs, instances,
                          dynamic_batching, queue_delay_us, parameters=params)
    post = mc.python_model(names["postprocess"], engine_out + [letterbox], outputs, mbs, instances,
                           dynamic_batching, queue_delay_us, parameters=params)
    _fresh_version_dir(repo / names["preprocess"])
    _fresh_version_dir(repo / names["postprocess"])
    where = python_paths or {}  # in the container csrinfer is installed: nothing to add
    _write_model(repo / names["preprocess"], pre, "decode + letterbox for " + names["engine"], "PreprocessModel", where)
    _write_model(repo / names["postprocess"], post, "instances from " + names["engine"], "PostprocessModel", where)

    graph = {t["name"]: f"_{t['name']}" for t in engine_in + engine_out + [letterbox]}
    steps = [
        (names["preprocess"], {protocol.IMAGE: protocol.IMAGE},
         {engine_in[0]["name"]: graph[engine_in[0]["name"]], "letterbox": graph["letterbox"]}),
        (names["engine"], {t["name"]: graph[t["name"]] for t in engine_in},
         {t["name"]: graph[t["name"]] for t in engine_out}),
        (names["postprocess"], {t["name"]: graph[t["name"]] for t in engine_out + [letterbox]},
         {o: o for o in protocol.OUTPUTS}),
    ]
    ensemble = mc.ensemble_model(name, image, outputs, mbs, steps,
                                 parameters=_class_parameters(info))
    (repo / name).mkdir(parents=True, exist_ok=True)
    (repo / name / "1").mkdir(exist_ok=True)  # an ensemble still needs a version folder
    (repo / name / "config.pbtxt").write_text(mc.to_pbtxt(ensemble) + "\n")
    return repo


def engine_io(model_file: Path, info) -> tuple[list[dict], list[dict], int | None]:
    """(inputs, outputs, static batch or None) of an exported graph, dims without the batch axis
    when it is dynamic and with it when static."""
    if model_file.suffix.lower() == ".onnx":
        import onnx

        graph = onnx.load(str(model_file), load_external_data=False).graph
        values = [(v, "in") for v in graph.input] + [(v, "out") for v in graph.output]
        specs = {"in": [], "out": []}
        batch = None
        for value, kind in values:
            t = value.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
            if value.name == "images":
                batch = dims[0] if dims[0] > 0 else None
            if t.elem_type not in mc.ONNX_TO_TRITON:
                raise ExportError(f"{model_file}: tensor '{value.name}' has ONNX type {t.elem_type}, "
                                  f"which Triton cannot serve")
            specs[kind].append((value.name, mc.ONNX_TO_TRITON[t.elem_type], dims))
    else:  # a TensorRT plan: shapes from its sidecar metadata (the graph's contract, design.md §2)
        k = int(info.inference.get("max_per_img", 100))
        h, w = info.input_size or (-1, -1)
        mh, mw = (h // info.stride, w // info.stride) if info.input_size else (-1, -1)
        batch = info.batch
        b = batch if batch is not None else -1
        specs = {"in": [("images", "TYPE_FP32", [b, 3, h, w])],
                 "out": [("scores", "TYPE_FP32", [b, k]), ("labels", "TYPE_INT64", [b, k]),
                         ("masks", "TYPE_FP32", [b, k, mh, mw])]}  # FP16 engines keep FP32 I/O
    strip = batch is None
    make = lambda spec: mc.tensor(spec[0], spec[1], spec[2][1:] if strip else spec[2])  # noqa: E731
    order = {n: i for i, n in enumerate(("scores", "labels", "masks"))}
    outputs = sorted(specs["out"], key=lambda s: order.get(s[0], len(order)))
    return [make(s) for s in specs["in"]], [make(s) for s in outputs], batch


def _protocol_outputs() -> list[dict]:
    return [mc.tensor(n, *protocol.OUTPUT_SPECS[n]) for n in protocol.OUTPUTS]


def _batched(spec: dict, max_batch_size: int) -> dict:
    """Without Triton's batch axis (max_batch_size 0) every tensor spells out its batch of 1."""
    return spec if max_batch_size > 0 else {**spec, "dims": [1] + spec["dims"]}


def _write_model(model_dir: Path, config: dict, role: str, cls: str, python_paths: Mapping | None) -> None:
    where = local_python_paths() if python_paths is None else python_paths
    paths, site_dirs = ([str(p) for p in where.get(k, ())] for k in ("paths", "site_dirs"))
    (model_dir / "config.pbtxt").write_text(mc.to_pbtxt(config) + "\n")
    (model_dir / "1" / "model.py").write_text(MODEL_PY.format(
        role=role, module="csrinfer.serve.triton_models", cls=cls,
        paths=json.dumps(paths, indent=4), site_dirs=json.dumps(site_dirs, indent=4)))


def _existing(path, suffixes: Sequence[str]) -> Path:
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise ModelFileError(f"model file {path} has suffix '{path.suffix}'; use one of {', '.join(suffixes)}")
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist" if not path.exists() else f"model file {path} is not a file")
    return path.resolve()


def _class_parameters(info) -> dict:
    """What a client needs to name its results: class names and the dataset category ids."""
    ids = list(info.category_ids) if info.category_ids is not None else None
    return {"class_names": list(info.class_names), "category_ids": ids}


def _check_arguments(instances, max_batch, kind: str = "KIND_GPU", python_paths=None) -> None:
    """Before anything is written: a repository is rewritten in place, so a late failure would
    leave it half old, half new."""
    for what, value in (("the number of model instances", instances), ("the largest batch", max_batch)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{what} must be a whole number of at least 1, got {value!r}")
    if kind not in KINDS:
        raise ConfigError(f"kind must be one of {', '.join(KINDS)} (Triton's instance kinds), got {kind!r}")
    if python_paths is not None and not isinstance(python_paths, Mapping):
        raise ConfigError("python_paths must map a role to a list of folders, e.g. local_python_paths(), "
                          f"not a {type(python_paths).__name__}")


def _fresh_version_dir(model_dir: Path) -> Path:
    """``model_dir/1`` emptied (a repository is rewritten whole, never mixed with an old one)."""
    version = model_dir / "1"
    if version.exists():
        shutil.rmtree(version)
    version.mkdir(parents=True)
    return version


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
