"""Running a trained model: Segmenter, Instances, backends, pre- and post-processing.

``from csrinfer.runtime import Segmenter`` (or ``csrinfer.Segmenter``); the names below load
their modules on first access.
"""

from __future__ import annotations

__all__ = ["Segmenter", "Instances", "ModelInfo", "load_image", "draw_instances"]

_LAZY = {
    "Segmenter": "csrinfer.runtime.segmenter",
    "Instances": "csrinfer.runtime.instances",
    "ModelInfo": "csrinfer.runtime.model_info",
    "load_image": "csrinfer.runtime.image_io",
    "draw_instances": "csrinfer.runtime.draw",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'csrinfer.runtime' has no attribute '{name}'")
