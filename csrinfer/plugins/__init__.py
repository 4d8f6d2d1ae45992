"""The fused D2S op (design.md §3): its CUDA kernel, TensorRT plugin, PyTorch op and ONNX Runtime op."""
