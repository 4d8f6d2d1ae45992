"""Export: PyTorch -> ONNX (``onnx.py``), ONNX -> TensorRT engine (``tensorrt.py``)."""
