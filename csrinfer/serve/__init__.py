"""Serving csrinfer models on NVIDIA Triton Inference Server (issue 9).

- :mod:`~csrinfer.serve.repository`: Triton model repositories (``write_serve_repo`` for
  ``csrinfer serve``, ``write_triton_repo`` for ``csrinfer export --triton-repo``).
- :mod:`~csrinfer.serve.server`: ``TritonServer``, a real ``tritonserver`` process on loopback.
- :mod:`~csrinfer.serve.client`: ``RemoteSegmenter``, ``Segmenter``'s interface over HTTP/gRPC.
- :mod:`~csrinfer.serve.protocol`: the tensors those models take and return.
- :mod:`~csrinfer.serve.triton_models`: the Python-backend models (imported by Triton only).

Nothing here is imported by ``import csrinfer``; tritonclient is needed by the client only.
"""

from __future__ import annotations

_EXPORTS = {
    "RemoteSegmenter": "csrinfer.serve.client",
    "TritonServer": "csrinfer.serve.server",
    "write_serve_repo": "csrinfer.serve.repository",
    "write_triton_repo": "csrinfer.serve.repository",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'csrinfer.serve' has no attribute '{name}'")
