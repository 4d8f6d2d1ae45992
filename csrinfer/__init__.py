"""csrinfer: the CSR-D2S instance-segmentation network from training to deployment.

``import csrinfer`` works on a CPU-only machine without TensorRT; heavy parts load lazily.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "errors"]

from csrinfer import errors  # noqa: E402
