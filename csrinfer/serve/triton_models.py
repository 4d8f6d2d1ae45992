"""The Python-backend models of csrinfer's Triton repositories (loaded by Triton's stub only).

Each class is what a repository's ``model.py`` exposes as ``TritonPythonModel``
(:mod:`csrinfer.serve.repository`). They translate between Triton tensors and csrinfer's own
pre-processing, ``Segmenter`` and post-processing; nothing of those is re-implemented here.

A request that cannot be served (an undecodable image, a decompression bomb, both inputs or
neither) gets an error response naming the problem; the other requests of the same batch are
served, and so is everything after.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from csrinfer.errors import CsrinferError
from csrinfer.image_io import MAX_PIXELS
from csrinfer.serve import protocol


def model_parameters(args: dict) -> dict[str, str]:
    """The string parameters of the model's config.pbtxt."""
    config = json.loads(args["model_config"])
    return {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}


def input_array(request, name: str) -> np.ndarray | None:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def error_response(error: Exception):
    """A user's mistake is INVALID_ARG (HTTP 400); anything else INTERNAL (HTTP 500)."""
    if isinstance(error, CsrinferError):
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error), pb_utils.TritonError.INVALID_ARG))
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(
        f"internal error: {type(error).__name__}: {error}", pb_utils.TritonError.INTERNAL))


def outputs_response(outputs: dict[str, np.ndarray]):
    return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(k, v) for k, v in outputs.items()])


def request_images(request, max_pixels: int) -> list[np.ndarray]:
    return protocol.decode_request_images(input_array(request, protocol.IMAGE),
                                          input_array(request, protocol.IMAGE_RAW), max_pixels)


class SegmenterModel:
    """``csrinfer serve``: decode every request of the batch, one ``Segmenter.predict_batch``, RLE out."""

    def initialize(self, args: dict) -> None:
        from csrinfer.runtime.segmenter import Segmenter

        params = model_parameters(args)
        model_file = Path(args["model_repository"]) / args["model_version"] / params["model_file"]
        self.max_pixels = int(params.get("max_pixels") or MAX_PIXELS)
        self.segmenter = Segmenter(model_file, device=params.get("device") or None, max_pixels=self.max_pixels)

    def execute(self, requests: list) -> list:
        responses: list = [None] * len(requests)
        images, owners = [], []
        for i, request in enumerate(requests):
            try:
                decoded = request_images(request, self.max_pixels)
            except Exception as e:  # noqa: BLE001 - every failure becomes that request's error
                responses[i] = error_response(e)
                continue
            owners.append((i, len(images), len(images) + len(decoded)))
            images += decoded
        if images:
            try:
                results = self.segmenter.predict_batch(images)
            except Exception as e:  # noqa: BLE001
                for i, _, _ in owners:
                    responses[i] = error_response(e)
            else:
                for i, start, stop in owners:
                    responses[i] = outputs_response(protocol.encode_instances(results[start:stop]))
        return responses


class PreprocessModel:
    """Ensemble step 1: encoded images -> ``images`` float32 [b, 3, H, W] and ``letterbox`` int32 [b, 6]
    (original, resized and padded H, W), by the exported model's own resize rule. The images of
    one request make one tensor, so there they are padded to the largest (``RemoteSegmenter``
    sends one image a request; ``Segmenter`` never pads an image to another's size)."""

    def initialize(self, args: dict) -> None:
        from csrinfer.contract.model_info import ModelInfo

        params = model_parameters(args)
        self.info = ModelInfo.from_metadata(json.loads(params["model_info"]), args["model_name"])
        self.max_pixels = int(params.get("max_pixels") or MAX_PIXELS)

    def execute(self, requests: list) -> list:
        from csrinfer.runtime.preprocess import letterbox_batch

        responses = []
        for request in requests:
            try:
                batch, boxed = letterbox_batch(request_images(request, self.max_pixels), self.info)
                boxes = np.array([[*b.original, *b.resized, *b.padded] for b in boxed], np.int32)
                responses.append(outputs_response({"images": batch, "letterbox": boxes}))
            except Exception as e:  # noqa: BLE001
                responses.append(error_response(e))
        return responses


class PostprocessModel:
    """Ensemble step 3: graph outputs + ``letterbox`` -> the instances of :mod:`csrinfer.serve.protocol`."""

    def initialize(self, args: dict) -> None:
        from csrinfer.contract.model_info import ModelInfo

        self.info = ModelInfo.from_metadata(json.loads(model_parameters(args)["model_info"]), args["model_name"])

    def execute(self, requests: list) -> list:
        from csrinfer.runtime.postprocess import to_instances
        from csrinfer.letterbox import Letterbox

        info = self.info
        responses = []
        for request in requests:
            try:
                scores, labels, masks, boxes = (input_array(request, n) for n in ("scores", "labels", "masks", "letterbox"))
                results = [to_instances(scores[i], labels[i], masks[i],
                                        Letterbox(tuple(b[0:2]), tuple(b[2:4]), tuple(b[4:6])),
                                        info.class_names, mask_thr=info.mask_thr)
                           for i, b in enumerate(boxes.tolist())]
                responses.append(outputs_response(protocol.encode_instances(results)))
            except Exception as e:  # noqa: BLE001
                responses.append(error_response(e))
        return responses
