"""``model.plan.json``: what a TensorRT engine was built from, with, and for (design.md §2).

A plan file is opaque and tied to the TensorRT version and GPU that built it, so csrinfer writes
a JSON sidecar next to it: the ONNX graph's ``metadata_props`` (class names, input size, stride,
thresholds, versions; what :class:`csrinfer.contract.model_info.ModelInfo` reads) plus a
``tensorrt`` section (TensorRT version, GPU, precision, input shape profile, plugins, build
options). The TensorRT backend reads it before it deserializes the plan and says what does not
match this machine. The plan itself stays a plain TensorRT engine that ``trtexec`` can load.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from csrinfer.errors import EngineMismatchError, ModelFileError
from csrinfer.tensorrt_env import Gpu, parse_version

FORMAT = "csrinfer-engine"
FORMAT_VERSION = 1
HARDWARE_LEVELS = ("none", "ampere_plus", "same_compute_capability")


def sidecar_path(plan: str | os.PathLike) -> Path:
    """model.plan -> model.plan.json."""
    plan = Path(plan)
    return plan.with_name(plan.name + ".json")


@dataclass(frozen=True)
class EngineRecord:
    """The ``tensorrt`` section of the sidecar.

    Attributes:
        tensorrt_version: ``tensorrt.__version__`` of the builder.
        gpu_name, compute_capability: the GPU the engine was built on.
        precision: "fp16" or "fp32".
        input_shapes: input name -> {"min": [...], "opt": [...], "max": [...]} (equal for static inputs).
        plugins: custom ops of the graph, [{"op", "domain", "count"}].
        version_compatible: built with BuilderFlag.VERSION_COMPATIBLE (runs on later TensorRT).
        hardware_compatibility: one of HARDWARE_LEVELS.
        onnx: the ONNX file it was built from (name only) and its SHA-256.
        options: the remaining build options, for the record.
    """

    tensorrt_version: str
    gpu_name: str
    compute_capability: tuple[int, int]
    precision: str
    input_shapes: dict
    plugins: list = field(default_factory=list)
    version_compatible: bool = False
    hardware_compatibility: str = "none"
    onnx: str = ""
    onnx_sha256: str = ""
    built: str = ""
    options: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **asdict(self),
                "compute_capability": list(self.compute_capability)}

    @classmethod
    def from_json(cls, data: dict, source: str) -> "EngineRecord":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ModelFileError(f"{source} has no '{FORMAT}' section; rebuild the engine with `csrinfer build`")
        if int(data.get("format_version", 0)) > FORMAT_VERSION:
            raise ModelFileError(f"{source} has sidecar version {data['format_version']}; this csrinfer reads "
                                 f"up to {FORMAT_VERSION}, upgrade csrinfer")
        try:
            level = str(data.get("hardware_compatibility", "none"))
            if level not in HARDWARE_LEVELS:
                raise ValueError(f"unknown hardware_compatibility '{level}'")
            return cls(
                tensorrt_version=str(data["tensorrt_version"]),
                gpu_name=str(data["gpu_name"]),
                compute_capability=tuple(int(v) for v in data["compute_capability"]),
                precision=str(data["precision"]),
                input_shapes={str(k): {m: [int(d) for d in v[m]] for m in ("min", "opt", "max")}
                              for k, v in dict(data["input_shapes"]).items()},
                plugins=list(data.get("plugins") or []),
                version_compatible=bool(data.get("version_compatible", False)),
                hardware_compatibility=level,
                onnx=str(data.get("onnx", "")),
                onnx_sha256=str(data.get("onnx_sha256", "")),
                built=str(data.get("built", "")),
                options=dict(data.get("options") or {}),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ModelFileError(f"{source} has a malformed 'tensorrt' section ({type(e).__name__}: {e})") from None


def write_sidecar(plan: str | os.PathLike, metadata: dict, record: EngineRecord) -> Path:
    """Write ``model.plan.json`` atomically: the ONNX ``metadata`` (decoded values) plus ``record``.

    The engine's precision replaces the graph's: an FP32 graph built with FP16 runs in FP16.
    """
    from csrinfer import atomic

    data = {**metadata, "precision": record.precision, "tensorrt": record.to_json()}
    return atomic.write_json(sidecar_path(plan), data)


def read_sidecar(plan: str | os.PathLike) -> tuple[dict, EngineRecord]:
    """(ONNX metadata, EngineRecord) of a plan; a missing or broken sidecar is one ModelFileError."""
    path = sidecar_path(plan)
    if not path.is_file():
        raise ModelFileError(f"{plan} has no sidecar {path.name} (class names, input size, TensorRT version); "
                             f"build the engine with `csrinfer build --model MODEL.onnx` or `csrinfer export`")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"sidecar {path} is not readable JSON ({e})") from None
    if not isinstance(data, dict):
        raise ModelFileError(f"sidecar {path} is not a JSON object")
    record = EngineRecord.from_json(data.get("tensorrt"), str(path))
    metadata = {k: v for k, v in data.items() if k != "tensorrt"}
    return metadata, record


def check_engine(record: EngineRecord, tensorrt_version: str, gpu: Gpu, plan: str = "the engine") -> None:
    """Raise EngineMismatchError naming every way this machine differs from what ``record`` needs.

    A plan runs only on the TensorRT version that built it unless it was built version-compatible
    (then on that version or later), and only on GPUs of the compute capability it was built for
    unless it was built hardware-compatible ("Engine Compatibility", TensorRT developer guide).
    A different GPU model of the same compute capability runs the plan, possibly slower: a warning.
    """
    problems = []
    built, here = parse_version(record.tensorrt_version), parse_version(tensorrt_version)
    if record.version_compatible:
        if here < built:
            problems.append(f"it was built version-compatible by TensorRT {record.tensorrt_version}, which needs "
                            f"that TensorRT or a later one, but TensorRT {tensorrt_version} is installed")
    elif here != built:
        problems.append(f"it was built by TensorRT {record.tensorrt_version} but TensorRT {tensorrt_version} "
                        f"is installed")
    cc_built, cc_here = tuple(record.compute_capability), tuple(gpu.compute_capability)
    if record.hardware_compatibility == "ampere_plus":
        if cc_here < (8, 0):
            problems.append(f"it was built for Ampere or newer GPUs but this GPU is {gpu.name} "
                            f"(compute capability {_cc(cc_here)})")
    elif cc_here != cc_built:
        problems.append(f"it was built for {record.gpu_name} (compute capability {_cc(cc_built)}) but this GPU is "
                        f"{gpu.name} (compute capability {_cc(cc_here)})")
    elif record.hardware_compatibility == "none" and gpu.name != record.gpu_name:
        warnings.warn(f"{plan} was built on {record.gpu_name} and runs on {gpu.name} (same compute capability); "
                      f"rebuild it here for the best speed", stacklevel=2)
    if problems:
        onnx = record.onnx or "MODEL.onnx"
        raise EngineMismatchError(f"{plan} does not fit this machine: {'; and '.join(problems)}; rebuild it here "
                                  f"with `csrinfer build --model {onnx}`")


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _cc(cc) -> str:
    return ".".join(str(v) for v in cc)
