"""OpenVINO backend: the exported ``model.onnx`` run by OpenVINO, or an OpenVINO IR ``model.xml``.

On a CPU, OpenVINO is the faster runtime where the CPU has bf16 (AVX512_BF16, AMX): its default
precision there is bf16, several times ONNX Runtime's FP32 (docs/cpu.md has the measurements).
The precision is explicit: ``precision="f32"`` forces FP32, ``"bf16"`` asks for bf16, ``None``
keeps OpenVINO's default for the CPU (bf16 where the CPU has it, else f32). What runs is
``backend.precision``, read back from the compiled model: "bf16" asked on a CPU without bf16
runs f32 (with a warning).

Class names, thresholds and shapes come from the file: an ``.onnx`` file's ``metadata_props``,
or an IR's ``rt_info`` under ``csrinfer`` (written by ``csrinfer export --openvino``; the same
keys as the ONNX metadata, csrinfer/contract/model_info.py). ``read_info`` reads the IR's XML
without OpenVINO. The TensorRT plugin graph (``model.plugin.onnx``, D2SFused nodes) is refused:
OpenVINO runs the standard-op graph.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from csrinfer.errors import ConfigError, ModelFileError, first_line
from csrinfer.contract.graph import INPUT_NAME, OUTPUT_NAMES, RT_INFO_KEY
from csrinfer.devices import parse_device
from csrinfer.runtime.backends.base import Backend
from csrinfer.contract.model_info import ModelInfo

log = logging.getLogger(__name__)

PRECISIONS = ("f32", "bf16")  # OpenVINO's names for its INFERENCE_PRECISION_HINT; None = its default


class OpenVINOBackend(Backend):
    """Args:
        path: a ``.onnx`` file exported by csrinfer (the standard graph, FP32 or QDQ INT8) or an
            OpenVINO IR ``.xml`` (its weights in the ``.bin`` beside it).
        device: None or "cpu" (OpenVINO's CPU plugin; CUDA devices are not OpenVINO's).
        precision: "f32", "bf16", or None for OpenVINO's default on this CPU.
        threads: inference threads (default: OpenVINO's choice, all cores).
    """

    name = "OpenVINO"

    def __init__(self, path, device: str | None = None, precision: str | None = None, threads: int | None = None):
        import openvino as ov

        path = Path(path)
        if device is not None and parse_device(device)[0] != "cpu":
            raise ConfigError(f"the OpenVINO backend runs on the CPU; device '{device}' is not available to it "
                              "(use the ONNX Runtime or TensorRT backend for CUDA)")
        if precision is not None and precision not in PRECISIONS:
            raise ConfigError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)} "
                              "(or None for OpenVINO's default)")
        self.info = self.read_info(path)
        core = ov.Core()
        try:
            model = core.read_model(str(path))
        except Exception as e:  # noqa: BLE001 - OpenVINO raises its own RuntimeError subclasses
            raise ModelFileError(f"OpenVINO cannot read {path} ({first_line(e)})") from None
        config = {"PERFORMANCE_HINT": "LATENCY"}
        if precision is not None:
            config["INFERENCE_PRECISION_HINT"] = precision
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            self.compiled = core.compile_model(model, "CPU", config)
        except Exception as e:  # noqa: BLE001
            raise ModelFileError(f"OpenVINO cannot compile {path} for the CPU ({first_line(e)})") from None
        self.device = "cpu"
        self.precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # what runs: f32, bf16
        if precision is not None and self.precision != precision:  # bf16 asked on a CPU without it
            log.warning("OpenVINO runs %s in %s: this CPU has no %s support", path.name, self.precision, precision)
        self._requests = threading.local()  # one infer request per thread: requests are not thread-safe

    @staticmethod
    def read_info(path) -> ModelInfo:
        path = Path(path)
        if path.suffix.lower() == ".xml":
            return _info_of_ir(path)
        from csrinfer.runtime.backends.onnxruntime import OnnxRuntimeBackend, _has_plugin_nodes

        if _has_plugin_nodes(path):
            raise ModelFileError(f"{path} is the TensorRT plugin graph (D2SFused nodes), which OpenVINO cannot run; "
                                 "give it the standard graph model.onnx")
        return OnnxRuntimeBackend.read_info(path)

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        images = np.ascontiguousarray(feeds[INPUT_NAME], dtype=np.float32)
        self.check_batch(images)
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self.compiled.create_infer_request()
        results = request.infer({INPUT_NAME: images})
        # copies: the request reuses its output buffers on its next run
        return {name: np.array(results[self.compiled.output(name)]) for name in OUTPUT_NAMES}


def _info_of_ir(path: Path) -> ModelInfo:
    """ModelInfo of an IR from its XML: the ``rt_info/csrinfer`` entries and the graph's
    Parameter and Result names and shapes (OpenVINO itself is not needed)."""
    import xml.etree.ElementTree as ET

    if not path.with_suffix(".bin").is_file():
        raise ModelFileError(f"{path} has no weights file {path.with_suffix('.bin').name} beside it")
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as e:
        raise ModelFileError(f"{path} is not a readable OpenVINO IR ({first_line(e)})") from None
    section = root.find(f"rt_info/{RT_INFO_KEY}")
    metadata = {} if section is None else {child.tag: child.get("value", "") for child in section}
    inputs, outputs = [], []
    for layer in root.iterfind("layers/layer"):
        if layer.get("type") == "Parameter":
            dims = [int(d.text) if d.text.strip().lstrip("-").isdigit() and int(d.text) > 0 else "?"
                    for d in layer.iterfind("output/port/dim")]
            inputs.append((layer.get("name"), dims))
        elif layer.get("type") == "Result":
            outputs.append(_result_name(layer))
    return ModelInfo.from_graph(metadata, inputs, outputs, str(path))


def _result_name(layer) -> str:
    """A Result layer's tensor name (its own layer name is OpenVINO's, e.g. ``scores/sink_port_0``)."""
    port = layer.find("input/port")
    names = layer.get("output_names") or (port.get("names") if port is not None else None)
    return (names or layer.get("name")).split(",")[0]
