"""What the parts of csrinfer agree on, at the bottom of the import graph (no torch, no OpenCV).

- :mod:`csrinfer.contract.graph`: the exported graph's input and output names and the fused
  D2S plugin node's op type, domain and version;
- :mod:`csrinfer.contract.model_info`: :class:`ModelInfo`, the metadata a model file carries
  (ONNX ``metadata_props``, the engine sidecar, a checkpoint's config);
- :mod:`csrinfer.contract.engine_sidecar`: the ``model.plan.json`` schema and the check of an
  engine's record against this machine.

Export writes these, the runtime, the plugins and serving read them.
"""
