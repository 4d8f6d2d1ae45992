"""ONNX Runtime backend: a ``.onnx`` file written by ``csrinfer export``.

Everything comes from the file: class names, thresholds and resize rule from its
``metadata_props``, static or dynamic shapes from its input. The execution provider is the
best one this onnxruntime build offers for the requested device (CUDA, then CPU).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from csrinfer.errors import BackendUnavailableError, ModelFileError, first_line
from csrinfer.contract.graph import INPUT_NAME
from csrinfer.devices import parse_device
from csrinfer.runtime.backends.base import Backend
from csrinfer.contract.model_info import ModelInfo

# Preference order when no device is named. TensorRT's EP is left out on purpose: TensorRT
# engines have their own backend (.plan), built ahead of time rather than at session start.
PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


def choose_providers(device: str | None, available: Sequence[str]) -> tuple[list, str]:
    """(providers for InferenceSession, device string) for ``device`` None/"cpu"/"cuda[:N]"."""
    if device is None:
        best = next(p for p in PREFERRED_PROVIDERS if p in available or p == "CPUExecutionProvider")
        device = "cuda" if best == "CUDAExecutionProvider" else "cpu"
    kind, index = parse_device(device)
    if kind == "cpu":
        return ["CPUExecutionProvider"], "cpu"
    if "CUDAExecutionProvider" not in available:
        raise BackendUnavailableError(
            f"device '{device}' asked for, but this onnxruntime has no CUDA execution provider "
            f"(it has {', '.join(available)}); install onnxruntime-gpu or use device='cpu'")
    return [("CUDAExecutionProvider", {"device_id": index or 0}), "CPUExecutionProvider"], f"cuda:{index or 0}"


class OnnxRuntimeBackend(Backend):
    """Args:
        path: a ``.onnx`` file exported by csrinfer.
        device: None (best available), "cpu" or "cuda[:N]".
        threads: intra-op threads (default: onnxruntime's choice, all cores).
        spin: let idle intra-op threads spin for more work after each run. Off by default: what
            follows a run here is our own post-processing on the same cores, which spinning
            threads would slow down (on the 2-core machine: post-processing 0.53 s -> 0.41 s
            and the run itself no slower).
    """

    name = "ONNX Runtime"

    def __init__(self, path, device: str | None = None, threads: int | None = None, spin: bool = False):
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise ModelFileError(f"model file {path} does not exist" if not path.exists()
                                 else f"model file {path} is not a file")
        providers, self.device = choose_providers(device, ort.get_available_providers())
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        self.session = _open_session(path, options, providers)
        self.info = ModelInfo.from_graph(self.session.get_modelmeta().custom_metadata_map,
                                   [(i.name, i.shape) for i in self.session.get_inputs()],
                                   [o.name for o in self.session.get_outputs()], str(path))
        self._output_names = [o.name for o in self.session.get_outputs()]

    @staticmethod
    def read_info(path) -> ModelInfo:
        import onnx

        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception as e:  # onnx raises DecodeError and friends on foreign bytes
            raise ModelFileError(f"{path} is not a readable ONNX file ({type(e).__name__})") from None
        weights = {t.name for t in proto.graph.initializer}
        inputs = [(i.name, [d.dim_value if d.HasField("dim_value") else d.dim_param
                            for d in i.type.tensor_type.shape.dim])
                  for i in proto.graph.input if i.name not in weights]
        return ModelInfo.from_graph({p.key: p.value for p in proto.metadata_props}, inputs,
                              [o.name for o in proto.graph.output], str(path))

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        images = np.ascontiguousarray(feeds[INPUT_NAME], dtype=np.float32)
        self.check_batch(images)
        return dict(zip(self._output_names, self.session.run(self._output_names, {INPUT_NAME: images})))


def _open_session(path: Path, options, providers):
    """An InferenceSession; for the TensorRT plugin graph (``model.plugin.onnx``) one whose
    ``D2SFused`` nodes run on their reference (csrinfer/plugins/ort_op.py)."""
    import onnxruntime as ort

    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/... types
        error = e
    if _has_plugin_nodes(path):  # looked at only now: the common graph pays no second parse
        from csrinfer.plugins import ort_op

        try:
            return ort_op.session(path, providers, options)
        except BackendUnavailableError:
            raise
        except Exception as e:  # noqa: BLE001
            error = e
    raise ModelFileError(f"ONNX Runtime cannot load {path} ({first_line(error)})") from None


def _has_plugin_nodes(path: Path) -> bool:
    """Whether the graph holds csrinfer's ``D2SFused`` nodes (read without its weights)."""
    import onnx

    from csrinfer.contract.graph import OP_TYPE

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception:  # noqa: BLE001 - not ONNX at all: InferenceSession says so in its own words
        return False
    return any(node.op_type == OP_TYPE for node in graph.node)
