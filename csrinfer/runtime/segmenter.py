"""``Segmenter``: one object that runs any csrinfer model file on images (design.md §2).

The backend is chosen once, from the file's suffix (csrinfer/runtime/backends); the
Segmenter's state is that backend plus the thresholds. Every backend shares the same three
steps: ``preprocess`` (load, letterbox, pad; csrinfer/runtime/preprocess.py), the backend's
``infer``, and ``postprocess`` (csrinfer/runtime/postprocess.py).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from csrinfer.errors import ConfigError, ImageError
from csrinfer.runtime.backends import Backend, load_backend
from csrinfer.image_io import MAX_PIXELS, load_image
from csrinfer.runtime.instances import Instances
from csrinfer.contract.model_info import ModelInfo
from csrinfer.runtime.postprocess import to_instances
from csrinfer.letterbox import Letterbox, padded_size, resized_size
from csrinfer.runtime.preprocess import letterbox_batch

DYNAMIC_BATCH = 8  # images per forward pass when the model's batch is free


class Segmenter:
    """Instance segmentation with a checkpoint, an ONNX file, a TensorRT engine or a module.

    Args:
        model: ``.pth``/``.pt`` (PyTorch), ``.onnx`` (ONNX Runtime, or OpenVINO with
            ``runtime="openvino"``), ``.xml`` (OpenVINO IR), ``.plan``/``.engine`` (TensorRT), or an
            in-memory ``CSRD2SNet`` (give ``cfg=`` or ``class_names=``).
        device: "cpu", "cuda", "cuda:N"; default: the best available for the backend.
        score_thr: keep only instances scoring above this (default: every instance the model
            returns; its graph has applied the model's own thresholds — by default category score
            above 0.1, score after maskness and Matrix NMS at least 0.05 — as mmdetection's SOLOv2
            does for evaluation).
        mask_thr: binarisation threshold of the mask probabilities (default: the model's, 0.5).
        input_size: (H, W) to letterbox every image into; default: the model's static size, or
            the model's resize rule (short side 800, long side at most 1333) when it is dynamic.
        max_pixels: image files claiming more pixels than this are refused (decompression bombs).
        fast: the PyTorch backend's speed switches in one value: ``True`` for the GPU fast path
            (FP16, channels_last, fused D2S kernel, CUDA graphs, GPU pre-processing), or a
            :class:`csrinfer.runtime.fastpath.FastPathOptions` naming some of them
            (``compile=True`` among them). Other model files have their own precision and graphs.
        agnostic_nms: also suppress overlapping masks of different classes (a class-agnostic
            Matrix NMS on the kept instances, on the backend's device). Off by default, as the
            paper's SOLOv2 setting, which keeps an object once per class it scores.
        **backend_options: passed to the backend (``cfg=``, ``class_names=`` for a module;
            ``threads=`` for ONNX Runtime and OpenVINO; ``runtime="openvino"`` and
            ``precision="f32"``/``"bf16"`` for OpenVINO, docs/cpu.md).

    ``predict`` and ``predict_batch`` may be called from several threads at once.

    Example:
        >>> seg = Segmenter("model.onnx")
        >>> instances = seg.predict("street.jpg")          # or an H x W x 3 uint8 BGR array
        >>> print(len(instances), instances.names, instances.scores)
        >>> cv2.imwrite("street.png", draw_instances(cv2.imread("street.jpg"), instances))
    """

    def __init__(self, model, device: str | None = None, *, score_thr: float | None = None,
                 mask_thr: float | None = None, input_size: Sequence[int] | None = None,
                 max_pixels: int = MAX_PIXELS, agnostic_nms: bool = False, fast=False, **backend_options):
        fast = _fold_old_switches(fast, backend_options)
        if fast:
            backend_options["fast"] = fast
        for name, value in (("score_thr", score_thr), ("mask_thr", mask_thr)):
            if value is not None and not 0 <= value <= 1:  # above 1 would silently keep nothing
                raise ConfigError(f"{name} is a probability in [0, 1], got {value}")
        self.backend: Backend = load_backend(model, device, **backend_options)
        info = self.backend.info
        self.score_thr = 0.0 if score_thr is None else float(score_thr)  # 0: the graph's empty slots only
        self.mask_thr = info.mask_thr if mask_thr is None else float(mask_thr)
        if input_size is not None:
            input_size = _size_pair(input_size)
            if info.input_size is not None and input_size != tuple(info.input_size):
                raise ConfigError(f"this model has a static input of {info.input_size[0]}x{info.input_size[1]}; "
                                  f"input_size={input_size[0]}x{input_size[1]} cannot change it (export it again)")
            if input_size[0] % info.size_divisor or input_size[1] % info.size_divisor:
                raise ConfigError(f"input_size {input_size[0]}x{input_size[1]} must be multiples of {info.size_divisor}")
        self.input_size = input_size or info.input_size
        self.max_pixels = max_pixels
        self.agnostic_nms = bool(agnostic_nms)

    @property
    def info(self) -> ModelInfo:
        return self.backend.info

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.backend.info.class_names

    @property
    def device(self) -> str:
        return self.backend.device

    def predict(self, image) -> Instances:
        """One image (a path, an H x W x 3 uint8 BGR array or a PIL image) -> Instances at its size."""
        return self.predict_batch([image])[0]

    __call__ = predict

    def predict_batch(self, images: Sequence, batch_size: int | None = None,
                      errors: str = "raise") -> list[Instances]:
        """Several images -> one Instances each, in order.

        Only images that letterbox to the same input size share a forward pass, so a result
        never depends on which other images were in the batch (padding to a larger image would
        change what the network sees). ``batch_size``: images per forward pass (a static-batch
        model always uses its own).

        ``errors``: what an unusable image (unreadable, corrupt, too large) does. "raise" (the
        default, as mmdetection's ``inference_detector`` and Ultralytics do): raise
        :class:`csrinfer.errors.ImageError` for the first one, before any forward pass.
        "return": the good images are still segmented, and that image's place in the list
        holds its ``ImageError`` instead of an ``Instances`` (test with ``isinstance``).
        """
        if isinstance(images, (str, os.PathLike)):
            raise ImageError(f"predict_batch takes a list of images, got the path {images}; use predict for one")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ConfigError(f"batch_size must be a whole number of at least 1, got {batch_size!r}")
        if errors not in ("raise", "return"):
            raise ConfigError(f"errors must be 'raise' or 'return', got {errors!r}")
        images = list(images)  # any iterable, a generator included
        results: list[Instances | ImageError | None] = [None] * len(images)
        loaded = {}
        for i, im in enumerate(images):
            try:
                loaded[i] = load_image(im, self.max_pixels, name=f"image array {i}" if len(images) > 1 else None)
            except ImageError as e:
                if errors == "raise":
                    raise
                results[i] = e
        step = self.info.batch or batch_size or DYNAMIC_BATCH
        groups = defaultdict(list)  # network input size -> indices of the images that get it
        for i, image in loaded.items():
            groups[self.input_shape(*image.shape[:2])].append(i)
        for indices in groups.values():
            for start in range(0, len(indices), step):
                chunk = indices[start:start + step]
                batch, boxes = self.preprocess([loaded[i] for i in chunk])
                for i, instances in zip(chunk, self.postprocess(self.backend.infer({"images": batch}), boxes)):
                    results[i] = instances
        return results

    def input_shape(self, height: int, width: int) -> tuple[int, int]:
        """(H, W) of the network input an image of this size is letterboxed into."""
        if self.input_size is not None:
            return tuple(self.input_size)
        info = self.info
        return padded_size(*resized_size(height, width, info.short_side, info.max_size), info.size_divisor)

    def preprocess(self, images_bgr: Sequence[np.ndarray]) -> tuple[np.ndarray, list[Letterbox]]:
        """uint8 BGR images -> (float32 [B, 3, H, W] RGB 0-255 padded, where each image went).

        A static-batch model gets its full batch (missing images are padding; their outputs
        are ignored by ``postprocess``, which returns one result per box). A backend with a
        ``preprocess_device`` gets a torch tensor letterboxed on that device instead of numpy.
        """
        return letterbox_batch(images_bgr, self.info, self.input_size, self.backend.preprocess_device)

    def postprocess(self, outputs: dict, boxes: Sequence[Letterbox]) -> list[Instances]:
        """Graph outputs for a batch -> one Instances per box (extra batch entries ignored)."""
        return [to_instances(outputs["scores"][i], outputs["labels"][i], outputs["masks"][i], box,
                             self.class_names, self.score_thr, self.mask_thr, self.info.category_ids,
                             self.agnostic_nms)
                for i, box in enumerate(boxes)]

    def __repr__(self) -> str:
        return f"Segmenter({self.backend!r}, score_thr={self.score_thr}, mask_thr={self.mask_thr})"


def _size_pair(size) -> tuple[int, int]:
    """(H, W) of positive whole numbers, or one ConfigError sentence."""
    try:
        h, w = size
        if int(h) == h and int(w) == w and h > 0 and w > 0:
            return int(h), int(w)
    except (TypeError, ValueError):
        pass
    raise ConfigError(f"input_size must be (height, width) in pixels, positive whole numbers, got {size!r}")


def _fold_old_switches(fast, options: dict):
    """``fast`` with the switches older versions took as separate keywords (``fp16=True``, ...)
    moved out of ``options`` into it, with a DeprecationWarning."""
    import dataclasses
    import warnings

    from csrinfer.runtime.fastpath import FastPathOptions

    old = {f.name: bool(options.pop(f.name)) for f in dataclasses.fields(FastPathOptions) if f.name in options}
    if not old:
        return fast
    warnings.warn(f"Segmenter({', '.join(f'{k}=' for k in old)}...) is deprecated: give "
                  f"fast=FastPathOptions({', '.join(f'{k}={v}' for k, v in old.items())})",
                  DeprecationWarning, stacklevel=3)
    return dataclasses.replace(FastPathOptions.of(fast), **old)
