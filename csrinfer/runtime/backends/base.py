"""The backend contract: one small class per model-file format behind ``Segmenter``.

Like Polygraphy's runners, a backend takes and returns dicts of name -> array: the input
``images`` float32 [B, 3, H, W] RGB 0-255, padded (design.md §2), and the outputs ``scores``
[B, K], ``labels`` [B, K] and ``masks`` [B, K, H/s, W/s]. Outputs may be numpy arrays or torch
tensors (a CUDA backend keeps them on its device so post-processing runs there). Everything a
backend needs is read from the file it is given (:class:`ModelInfo`); pre- and post-processing
are not its business (csrinfer/runtime/preprocess.py, postprocess.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING

from csrinfer.contract.graph import INPUT_NAME, OUTPUT_NAMES
from csrinfer.devices import parse_device

if TYPE_CHECKING:
    import numpy as np

    from csrinfer.contract.model_info import ModelInfo

__all__ = ["Backend", "INPUT_NAME", "OUTPUT_NAMES", "parse_device"]


class Backend(ABC):
    """Runs one model file. Subclasses set ``info`` and ``device`` in ``__init__``.

    ``infer`` must be safe to call from several threads at once on one instance.
    """

    info: ModelInfo
    device: str = "cpu"
    name: str = "backend"
    # Where Segmenter letterboxes images for this backend: None = on the CPU (numpy, OpenCV);
    # a torch device = there, as tensors (the PyTorch backend's ``gpu_preprocess``).
    preprocess_device: str | None = None

    @staticmethod
    def read_info(path) -> ModelInfo:
        """The :class:`ModelInfo` of a model file, read without loading the model (each file
        format's backend says how)."""
        raise NotImplementedError

    @abstractmethod
    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, object]:
        """``{"images": float32 [B, 3, H, W]}`` -> ``{"scores", "labels", "masks"}``."""

    def check_batch(self, images: np.ndarray) -> None:
        """Refuse an input the model cannot take, naming the expected shape."""
        from csrinfer.errors import ImageError

        if images.ndim != 4 or images.shape[1] != 3:
            raise ImageError(f"{self.name} backend takes images as [B, 3, H, W], got shape {tuple(images.shape)}")
        if self.info.batch is not None and images.shape[0] != self.info.batch:
            raise ImageError(f"{self.name} model has a static batch of {self.info.batch}, got {images.shape[0]} images")
        if self.info.input_size is not None and tuple(images.shape[2:]) != tuple(self.info.input_size):
            h, w = self.info.input_size
            raise ImageError(f"{self.name} model has a static input of {h}x{w}, got "
                             f"{images.shape[2]}x{images.shape[3]}")

    def __repr__(self) -> str:
        size = "dynamic" if self.info.dynamic else "x".join(map(str, self.info.input_size))
        return f"{type(self).__name__}(device={self.device}, input={size}, classes={len(self.info.class_names)})"
