"""PyTorch backend: a ``.pth``/``.pt`` checkpoint or an in-memory ``CSRD2SNet``, run eagerly.

The checkpoint's config gives the class names, thresholds and resize rule; the network's
``predict`` includes the in-graph post-processing, so its outputs are those of the exported
graph. Outputs stay torch tensors on the model's device (post-processing runs there too).
On CUDA the GPU fast path's switches (csrinfer/runtime/fastpath.py) apply: FP16,
channels_last, the fused D2S kernel, CUDA graphs, pre-processing on the GPU.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from csrinfer.errors import BackendUnavailableError, ConfigError, ModelFileError
from csrinfer.contract.graph import OUTPUT_NAMES
from csrinfer.devices import torch_device
from csrinfer.runtime.backends.base import Backend
from csrinfer.runtime.fastpath import FastPathOptions, build_fast_net
from csrinfer.contract.model_info import ModelInfo, default_class_names


class TorchBackend(Backend):
    """Args:
        model: path to a checkpoint, or a ``CSRD2SNet``.
        device: "cpu", "cuda", "cuda:1", ... (default: CUDA when available).
        cfg: the model's :class:`csrinfer.config.Config` (in-memory model only; gives class names).
        class_names: names for an in-memory model without ``cfg`` (default "0", "1", ...).
        fast: the speed switches (:class:`csrinfer.runtime.fastpath.FastPathOptions`): False
            (default, eager FP32), True (the five GPU switches) or a ``FastPathOptions``. On a
            CPU the GPU switches are ignored with one warning. An in-memory model is copied,
            not converted.
    """

    name = "PyTorch"

    def __init__(self, model, device: str | None = None, cfg=None, class_names: Sequence[str] | None = None, *,
                 fast: bool | FastPathOptions = False):
        self.device = str(torch_device(device))
        self.options = FastPathOptions.of(fast).for_device(self.device)
        if isinstance(model, torch.nn.Module):
            self.info = _info_of_module(model, cfg, class_names)
            self.model = copy.deepcopy(model) if self.options.changes_model else model
        else:
            from csrinfer.model.checkpoint import load_checkpoint

            self.model, cfg, _ = load_checkpoint(model, map_location=self.device)
            self.info = ModelInfo.from_config(cfg)
        if self.options.fp16:
            self.info = self.info.replace(precision="fp16")
        self.preprocess_device = self.device if self.options.gpu_preprocess else None
        self._predict = build_fast_net(self.model, self.options, self.device)
        # A CUDA graph's outputs are its static buffers: one replay at a time, copied out.
        self._graph_lock = threading.Lock() if self.options.cuda_graph else None

    @staticmethod
    def read_info(path) -> ModelInfo:
        from csrinfer.model.checkpoint import checkpoint_config, read_checkpoint

        return ModelInfo.from_config(checkpoint_config(read_checkpoint(path), path))

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
        images = torch.as_tensor(feeds["images"]).to(self.device, torch.float32)
        self.check_batch(images)
        with torch.inference_mode():
            if self._graph_lock is None:
                outputs = self._predict(images)
            else:
                with self._graph_lock:
                    outputs = [t.clone() for t in self._predict(images)]
        return dict(zip(OUTPUT_NAMES, outputs))


def _info_of_module(model: torch.nn.Module, cfg, class_names: Sequence[str] | None) -> ModelInfo:
    from csrinfer.config import require_config
    from csrinfer.model import CSRD2SNet

    if not isinstance(model, CSRD2SNet):
        raise ModelFileError(f"an in-memory model must be a CSRD2SNet (csrinfer.model.build_model), "
                             f"not a {type(model).__name__}")
    if cfg is not None:
        require_config(cfg)
    classes = model.head.num_classes
    names = class_names if class_names is not None else cfg.classes if cfg is not None else None
    if isinstance(names, str):
        raise ConfigError(f"class_names must be a list of names, not the string {names!r}")
    if names is not None and len(names) != classes:
        raise ConfigError(f"this model has {classes} classes but {'cfg' if class_names is None else 'class_names'} "
                          f"names {len(names)}; give one name per class")
    if cfg is not None:
        info = ModelInfo.from_config(cfg)
    else:
        inference = dict(getattr(model, "inference", {}))
        info = ModelInfo(class_names=default_class_names(model.head.num_classes), inference=inference,
                         stride=model.stride,
                         score_thr=inference.get("score_thr", 0.1), mask_thr=inference.get("mask_thr", 0.5))
    if class_names is not None:
        info = info.replace(class_names=tuple(class_names))
    # The module's own settings win: a caller may have changed them after building it.
    inference = {**info.inference, **getattr(model, "inference", {})}
    return info.replace(inference=inference, score_thr=inference.get("score_thr", info.score_thr),
                        mask_thr=inference.get("mask_thr", info.mask_thr))
