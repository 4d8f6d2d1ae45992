"""Test stand-in for Triton's ONNX Runtime backend, which the pip wheel's tritonserver lacks.

It serves an ensemble's ``<name>_engine`` model from the ``config.pbtxt`` that
``write_triton_repo`` wrote for ``platform: "onnxruntime_onnx"`` (only the platform line is
swapped for ``backend: "python"``): it feeds ONNX Runtime exactly the inputs that config names
and returns exactly the outputs it names, so a wrong name, dtype or dims fails the test.
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils


class OrtEngineModel:
    def initialize(self, args):
        import onnxruntime as ort

        config = json.loads(args["model_config"])
        self.inputs = [(t["name"], t["data_type"]) for t in config["input"]]
        self.outputs = [(t["name"], t["data_type"]) for t in config["output"]]
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def execute(self, requests):
        responses = []
        for request in requests:
            feeds = {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name, _ in self.inputs}
            values = self.session.run([name for name, _ in self.outputs], feeds)
            for (name, dtype), v in zip(self.outputs, values):
                if v.dtype != pb_utils.triton_string_to_numpy(dtype):  # never cast: a wrong config must fail
                    raise TypeError(f"config says {dtype} for '{name}', the graph gives {v.dtype}")
            tensors = [pb_utils.Tensor(name, np.ascontiguousarray(v)) for (name, _), v in zip(self.outputs, values)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
