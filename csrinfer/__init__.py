"""csrinfer: the CSR-D2S instance-segmentation network from training to deployment.

``import csrinfer`` works on a CPU-only machine without TensorRT; heavy parts load lazily:
``csrinfer.Segmenter`` imports torch and the runtime on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "errors", "Segmenter", "Instances"]

from csrinfer import errors  # noqa: E402
from csrinfer._lazy import lazy_getattr  # noqa: E402

# name -> module that defines it, imported on first access (PEP 562).
_LAZY = {
    "Segmenter": "csrinfer.runtime.segmenter",
    "Instances": "csrinfer.runtime.instances",
}


__getattr__ = lazy_getattr(__name__, _LAZY)
