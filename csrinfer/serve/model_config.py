"""Triton model configurations (``config.pbtxt``) as plain dicts, written in protobuf text format.

The dicts mirror Triton's ``ModelConfig`` message (model_config.proto) field for field, so the
text they render parses into it; tests check that with the ``model_config_pb2`` module that
``tritonclient[grpc]`` ships. Writing needs no Triton package at all.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence


class Enum(str):
    """A protobuf enum value such as ``TYPE_FP32``: written without quotes."""


# ONNX TensorProto element types -> Triton data types.
ONNX_TO_TRITON = {1: "TYPE_FP32", 2: "TYPE_UINT8", 3: "TYPE_INT8", 5: "TYPE_INT16", 6: "TYPE_INT32",
                  7: "TYPE_INT64", 9: "TYPE_BOOL", 10: "TYPE_FP16", 11: "TYPE_FP64", 16: "TYPE_BF16"}


def tensor(name: str, data_type: str, dims: Sequence[int], optional: bool = False) -> dict:
    spec = {"name": name, "data_type": Enum(data_type), "dims": [int(d) for d in dims]}
    if optional:
        spec["optional"] = True
    return spec


def string_parameters(values: Mapping[str, object]) -> list[dict]:
    """``parameters`` entries (a map<string, ModelParameters>); non-strings are stored as JSON."""
    return [{"key": k, "value": {"string_value": v if isinstance(v, str) else json.dumps(v)}}
            for k, v in values.items()]


def scheduling(max_batch_size: int, dynamic_batching: bool, queue_delay_us: int) -> dict:
    """``max_batch_size`` and, when on, ``dynamic_batching`` (off: one request per execution)."""
    config: dict = {"max_batch_size": int(max_batch_size)}
    if dynamic_batching and max_batch_size > 1:
        config["dynamic_batching"] = {"max_queue_delay_microseconds": int(queue_delay_us)}
    return config


def python_model(name: str, inputs: list[dict], outputs: list[dict], max_batch_size: int,
                 instances: int = 1, dynamic_batching: bool = True, queue_delay_us: int = 2000,
                 parameters: Mapping[str, object] | None = None) -> dict:
    """A Python-backend model running on CPU instances (the code picks its own device)."""
    return {"name": name, "backend": "python",
            **scheduling(max_batch_size, dynamic_batching, queue_delay_us),
            "input": inputs, "output": outputs,
            "instance_group": [{"count": int(instances), "kind": Enum("KIND_CPU")}],
            "parameters": string_parameters(parameters or {})}


def engine_model(name: str, platform: str, inputs: list[dict], outputs: list[dict], max_batch_size: int,
                 instances: int = 1, kind: str = "KIND_GPU", dynamic_batching: bool = True,
                 queue_delay_us: int = 2000) -> dict:
    """A model Triton runs natively: ``tensorrt_plan`` or ``onnxruntime_onnx``."""
    return {"name": name, "platform": platform,
            **scheduling(max_batch_size, dynamic_batching, queue_delay_us),
            "input": inputs, "output": outputs,
            "instance_group": [{"count": int(instances), "kind": Enum(kind)}]}


def ensemble_model(name: str, inputs: list[dict], outputs: list[dict], max_batch_size: int,
                   steps: list[tuple[str, Mapping[str, str], Mapping[str, str]]],
                   parameters: Mapping[str, object] | None = None) -> dict:
    """An ensemble; each step is (model name, {model input: ensemble tensor}, {model output: ensemble tensor})."""
    return {"name": name, "platform": "ensemble", "max_batch_size": int(max_batch_size),
            "input": inputs, "output": outputs,
            "ensemble_scheduling": {"step": [
                {"model_name": model, "model_version": -1,
                 "input_map": [{"key": k, "value": v} for k, v in ins.items()],
                 "output_map": [{"key": k, "value": v} for k, v in outs.items()]}
                for model, ins, outs in steps]},
            "parameters": string_parameters(parameters or {})}


def to_pbtxt(message: Mapping, indent: int = 0) -> str:
    """A dict in ModelConfig's shape -> protobuf text format."""
    pad = "  " * indent
    lines = []
    for key, value in message.items():
        if isinstance(value, Mapping):
            lines += [f"{pad}{key} {{", to_pbtxt(value, indent + 1), f"{pad}}}"]
        elif isinstance(value, (list, tuple)):
            if not value:
                continue
            if isinstance(value[0], Mapping):
                items = [f"{pad}  {{\n{to_pbtxt(v, indent + 2)}\n{pad}  }}" for v in value]
                lines += [f"{pad}{key} [", ",\n".join(items), f"{pad}]"]
            else:
                lines.append(f"{pad}{key}: [ {', '.join(_scalar(v) for v in value)} ]")
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}")
    return "\n".join(lines)


def _scalar(value) -> str:
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'
