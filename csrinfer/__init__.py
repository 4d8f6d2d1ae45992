"""csrinfer: the CSR-D2S instance-segmentation network from training to deployment.

``import csrinfer`` works on a CPU-only machine without TensorRT; heavy parts load lazily:
``csrinfer.Segmenter`` imports torch and the runtime on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "errors", "Segmenter", "Instances"]

from csrinfer import errors  # noqa: E402

# name -> module that defines it, imported on first access (PEP 562).
_LAZY = {
    "Segmenter": "csrinfer.runtime.segmenter",
    "Instances": "csrinfer.runtime.instances",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'csrinfer' has no attribute '{name}'")
