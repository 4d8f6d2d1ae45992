"""PyTorch backend: a ``.pth``/``.pt`` checkpoint or an in-memory ``CSRD2SNet``, run eagerly.

The checkpoint's config gives the class names, thresholds and resize rule; the network's
``predict`` includes the in-graph post-processing, so its outputs are those of the exported
graph. Outputs stay torch tensors on the model's device (post-processing runs there too).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from csrinfer.runtime.backends.base import OUTPUT_NAMES, Backend
from csrinfer.runtime.model_info import ModelInfo, default_class_names


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class TorchBackend(Backend):
    """Args:
        model: path to a checkpoint, or a ``CSRD2SNet``.
        device: "cpu", "cuda", "cuda:1", ... (default: CUDA when available).
        cfg: the model's :class:`csrinfer.config.Config` (in-memory model only; gives class names).
        class_names: names for an in-memory model without ``cfg`` (default "0", "1", ...).
    """

    name = "PyTorch"

    def __init__(self, model, device: str | None = None, cfg=None, class_names: Sequence[str] | None = None):
        self.device = str(torch.device(device or default_device()))
        if isinstance(model, torch.nn.Module):
            self.model = model.to(self.device).eval()
            self.info = _info_of_module(model, cfg, class_names)
        else:
            from csrinfer.checkpoint import load_checkpoint

            self.model, cfg, _ = load_checkpoint(model, map_location=self.device)
            self.info = ModelInfo.from_config(cfg)

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
        images = torch.as_tensor(feeds["images"]).to(self.device, torch.float32)
        self.check_batch(images)
        with torch.inference_mode():
            outputs = self.model.predict(images)
        return dict(zip(OUTPUT_NAMES, outputs))


def _info_of_module(model: torch.nn.Module, cfg, class_names: Sequence[str] | None) -> ModelInfo:
    if cfg is not None:
        info = ModelInfo.from_config(cfg)
    else:
        inference = dict(getattr(model, "inference", {}))
        info = ModelInfo(class_names=default_class_names(model.head.num_classes), inference=inference,
                         score_thr=inference.get("score_thr", 0.1), mask_thr=inference.get("mask_thr", 0.5))
    if class_names is not None:
        info = info.replace(class_names=tuple(class_names))
    # The module's own settings win: a caller may have changed them after building it.
    inference = {**info.inference, **getattr(model, "inference", {})}
    return info.replace(inference=inference, score_thr=inference.get("score_thr", info.score_thr),
                        mask_thr=inference.get("mask_thr", info.mask_thr))
