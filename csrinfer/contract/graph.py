"""Names in the exported graph that export, the runtime, the plugins and serving share.

Graph I/O (design.md §2): input ``images`` float32 [B, 3, H, W], RGB 0-255, padded; outputs
``scores`` [B, K], ``labels`` [B, K] int and ``masks`` [B, K, H/s, W/s] (mask probabilities at the
feature stride). The fused D2S node (``csrinfer/export/plugin_graph.py`` writes it) is
``csrinfer::D2SFused`` version 1; TensorRT maps it onto the plugin of that name
(``csrinfer/plugins/tensorrt_plugin.py``), ONNX Runtime onto a custom op (``csrinfer/plugins/ort_op.py``).
"""

from __future__ import annotations

INPUT_NAME = "images"
OUTPUT_NAMES = ("scores", "labels", "masks")

OP_TYPE = "D2SFused"
DOMAIN = "csrinfer"
PLUGIN_VERSION = "1"

# OpenVINO IR carries ModelInfo's metadata in this rt_info section (ONNX: metadata_props).
RT_INFO_KEY = "csrinfer"
