"""Running a trained model: Segmenter, Instances, backends, pre- and post-processing.

``from csrinfer.runtime import Segmenter`` (or ``csrinfer.Segmenter``); the names below load
their modules on first access.
"""

from __future__ import annotations

from csrinfer._lazy import lazy_getattr

__all__ = ["Segmenter", "Instances", "ModelInfo", "load_image", "draw_instances"]

_LAZY = {
    "Segmenter": "csrinfer.runtime.segmenter",
    "Instances": "csrinfer.runtime.instances",
    "ModelInfo": "csrinfer.contract.model_info",
    "load_image": "csrinfer.image_io",
    "draw_instances": "csrinfer.runtime.draw",
}


__getattr__ = lazy_getattr(__name__, _LAZY)
