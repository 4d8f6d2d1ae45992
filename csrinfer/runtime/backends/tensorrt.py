"""TensorRT backend: a ``.plan``/``.engine`` built by csrinfer, run with ``execute_async_v3`` (design.md §2-3).

On load it reads the ``model.plan.json`` sidecar and checks it against the installed TensorRT and
GPU before TensorRT sees the plan, so a mismatch is one sentence that names both sides
(csrinfer/contract/engine_sidecar.py). I/O buffers are PyTorch CUDA tensors (Ultralytics'
TensorRT backend does the same) or, with a CPU-only PyTorch, cuda-python device allocations as in
NVIDIA's samples since TensorRT 10.13 (samples/python/common_runtime.py). With ``cuda_graph=True``
the engine's launches are captured once per input shape and replayed (TensorRT developer guide,
"CUDA Graphs": run enqueueV3 once before capturing). Input shapes are checked against the
engine's optimisation profile first, naming the dimension that is out of range.

Outputs are PyTorch CUDA tensors (numpy arrays on the cuda-python path); pre- and post-processing
are the shared ones (csrinfer/runtime/preprocess.py, postprocess.py).

Nothing here has run under TensorRT on this project's machines (TensorRT is not installable
there); the calls follow the TensorRT 10.x/11.x Python API.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from csrinfer.errors import BackendUnavailableError, ImageError, ModelFileError
from csrinfer.contract.graph import INPUT_NAME, OUTPUT_NAMES
from csrinfer.devices import parse_device
from csrinfer.runtime.backends.base import Backend
from csrinfer.contract.model_info import ModelInfo


class TensorRTBackend(Backend):
    """Args:
        path: the plan (``.plan`` or ``.engine``) with its ``.json`` sidecar next to it.
        device: "cuda" or "cuda:N" (default "cuda:0").
        cuda_graph: capture the engine in a CUDA graph per input shape and replay it (PyTorch only).

    Example:
        >>> backend = TensorRTBackend("model.plan")
        >>> out = backend.infer({"images": batch})  # float32 [B, 3, H, W], RGB 0-255
    """

    name = "TensorRT"

    def __init__(self, path, device: str | None = None, cuda_graph: bool = False):
        from csrinfer.contract.engine_sidecar import check_engine, read_sidecar
        from csrinfer.tensorrt_env import gpu, import_tensorrt, make_logger

        path = Path(path)
        if not path.is_file():
            raise ModelFileError(f"TensorRT engine {path} does not exist")
        trt = import_tensorrt()
        index = _device_index(device)
        self.gpu = gpu(index)
        metadata, self.record = read_sidecar(path)
        check_engine(self.record, trt.__version__, self.gpu, path.name)
        self.info = ModelInfo.from_metadata(metadata, str(path))
        self.device = f"cuda:{index}"
        self.path = path
        self._trt = trt
        self._logger = make_logger(trt)
        self._index = index
        with self._on_device():  # TensorRT allocates on the current device
            self.engine = self._deserialize(path)
            self.context = self._new_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if inputs != [INPUT_NAME] or set(OUTPUT_NAMES) - set(names):
            raise ModelFileError(f"{path.name} has inputs {inputs} and outputs "
                                 f"{[n for n in names if n not in inputs]}; expected '{INPUT_NAME}' -> {OUTPUT_NAMES}")
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        # (min, opt, max) as the builder set them (the sidecar; min = opt = max for a static input)
        shapes = self.record.input_shapes.get(INPUT_NAME)
        if shapes is None:
            raise ModelFileError(f"{path.name}'s sidecar has no input shapes for '{INPUT_NAME}'; rebuild it")
        self.profile = tuple(tuple(shapes[k]) for k in ("min", "opt", "max"))
        self.io = _TorchIO(self.device) if _torch_cuda() else _CudaPythonIO(index)
        self.cuda_graph = cuda_graph and isinstance(self.io, _TorchIO)
        self._graphs: dict[tuple, tuple] = {}
        self._lock = threading.Lock()  # one execution context: one inference at a time

    @staticmethod
    def read_info(path) -> ModelInfo:
        from csrinfer.contract.engine_sidecar import read_sidecar

        return ModelInfo.from_metadata(read_sidecar(path)[0], str(path))

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, object]:
        """A batch larger than the profile's largest runs in chunks of that size."""
        images = feeds[INPUT_NAME]
        self.check_batch(images)
        max_batch = self.profile[2][0]
        if images.shape[0] > max_batch:
            parts = [self.infer({INPUT_NAME: images[i:i + max_batch]}) for i in range(0, images.shape[0], max_batch)]
            return {k: _concat([p[k] for p in parts]) for k in parts[0]}
        self.check_profile(tuple(images.shape))
        with self._lock, self._on_device():
            if self.cuda_graph:
                return self._replay(images)
            return self._run(images)

    def check_profile(self, shape: tuple[int, ...]) -> None:
        """Refuse an input shape outside the engine's optimisation profile, naming the dimension."""
        lo, _, hi = self.profile
        if len(shape) != len(lo):
            raise ImageError(f"{self.path.name} takes a {len(lo)}-D input, got shape {_fmt(shape)}")
        for i, (a, s, b) in enumerate(zip(lo, shape, hi)):
            if not a <= s <= b:
                axis = ("batch", "channels", "height", "width")[i] if len(lo) == 4 else f"dimension {i}"
                raise ImageError(f"input {_fmt(shape)} is outside {self.path.name}'s optimisation profile "
                                 f"(min {_fmt(lo)}, max {_fmt(hi)}): its {axis} is {s}, the engine takes {a} to {b}; "
                                 f"rebuild it with `csrinfer build --min-shape/--max-shape` to cover it")

    def _on_device(self):
        """``self.device`` made current for TensorRT's allocations and launches (cuda:1 and up)."""
        if _torch_cuda():
            import torch

            return torch.cuda.device(self._index)
        _set_device(self._index)  # cuda-python's current device is per thread: set on every call
        return contextlib.nullcontext()

    def _new_context(self):
        context = self.engine.create_execution_context()
        if context is None:
            raise ModelFileError(f"TensorRT could not create an execution context for {self.path.name} "
                                 f"({self._logger.first_error() or 'out of GPU memory?'})")
        return context

    def _deserialize(self, path: Path):
        runtime = self._trt.Runtime(self._logger)
        if self.record.version_compatible:
            # A version-compatible plan carries TensorRT's lean runtime (host code) and loads only when
            # host code is allowed (developer guide, "Version Compatibility"); the sidecar says we built it.
            runtime.engine_host_code_allowed = True
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            error = self._logger.first_error() or "no reason given"
            if "plugin" in error.lower():
                raise ModelFileError(f"{path.name} uses a plugin that is not registered in this process ({error}); "
                                     f"csrinfer's D2SFused plugin is ahead-of-time and needs no registration, so the "
                                     f"plan was built by another tool: rebuild it with `csrinfer build`")
            raise ModelFileError(f"TensorRT {self._trt.__version__} could not load {path.name}: {error}")
        self._runtime = runtime  # the engine must not outlive its runtime
        return engine

    def _bind(self, ctx, x_ptr: int, shape: tuple[int, ...]) -> dict[str, object]:
        """Set ``ctx``'s input shape and every tensor address; returns freshly allocated outputs."""
        if not ctx.set_input_shape(INPUT_NAME, shape):
            raise ImageError(f"TensorRT refused input shape {_fmt(shape)} for {self.path.name}")
        ctx.set_tensor_address(INPUT_NAME, x_ptr)
        outputs = {}
        for name in OUTPUT_NAMES:
            out_shape = tuple(ctx.get_tensor_shape(name))
            outputs[name] = self.io.empty(out_shape, self.dtypes[name])
            ctx.set_tensor_address(name, self.io.pointer(outputs[name]))
        return outputs

    def _run(self, images) -> dict[str, object]:
        x = self.io.upload(images, self.dtypes[INPUT_NAME])
        outputs = self._bind(self.context, self.io.pointer(x), tuple(images.shape))
        self._execute(self.context)
        return self.io.finish(outputs, keep=x)

    def _execute(self, ctx) -> None:
        # IExecutionContext.execute_async_v3(stream_handle): enqueue on a CUDA stream, after every
        # tensor address is set (set_tensor_address); returns False when the launch fails.
        if not ctx.execute_async_v3(self.io.stream_handle):
            raise ModelFileError(f"TensorRT could not run {self.path.name}: "
                                 f"{self._logger.first_error() or 'execute_async_v3 failed'}")

    def _replay(self, images) -> dict[str, object]:
        import torch

        key = tuple(images.shape)
        if key not in self._graphs:
            # A graph keeps the shapes and addresses its context had when captured, so each shape
            # gets a context of its own (the first one the backend's); rebinding a shared context
            # for shape B would leave shape A's graph replaying against B's settings.
            ctx = self.context if not self._graphs else self._new_context()
            static_in = self.io.upload(images, self.dtypes[INPUT_NAME])
            outputs = self._bind(ctx, self.io.pointer(static_in), key)
            self._execute(ctx)  # one plain run first: TensorRT finishes its deferred work outside capture
            self.io.stream.synchronize()
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph, stream=self.io.stream):
                    self._execute(ctx)
            except RuntimeError as e:  # a layer or plugin that cannot be captured: run without graphs
                warnings.warn(f"CUDA-graph capture of {self.path.name} failed ({e}); running without it",
                              stacklevel=3)
                self.cuda_graph = False
                return self._run(images)
            self._graphs[key] = (graph, static_in, outputs, ctx)
        graph, static_in, outputs, _ = self._graphs[key]
        if isinstance(images, torch.Tensor) and images.is_cuda:  # made on another stream: wait for it
            self.io.stream.wait_stream(torch.cuda.current_stream(static_in.device))
        with torch.cuda.stream(self.io.stream):
            static_in.copy_(torch.as_tensor(images).to(static_in.device, static_in.dtype), non_blocking=True)
            graph.replay()
        self.io.stream.synchronize()
        return {k: v.clone() for k, v in outputs.items()}  # the graph reuses its buffers next call


class _TorchIO:
    """PyTorch CUDA tensors as TensorRT's I/O buffers, on a stream of our own."""

    def __init__(self, device: str):
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.stream = torch.cuda.Stream(self.device)

    @property
    def stream_handle(self) -> int:
        return self.stream.cuda_stream

    def upload(self, array, dtype: np.dtype):
        t = self.torch
        if isinstance(array, t.Tensor) and array.is_cuda:  # made on another stream: wait for it
            self.stream.wait_stream(t.cuda.current_stream(self.device))
        with t.cuda.stream(self.stream):
            return t.as_tensor(array).to(self.device, _torch_dtype(dtype), non_blocking=True).contiguous()

    def empty(self, shape, dtype: np.dtype):
        return self.torch.empty(shape, dtype=_torch_dtype(dtype), device=self.device)

    @staticmethod
    def pointer(tensor) -> int:
        return tensor.data_ptr()

    def finish(self, outputs: dict, keep) -> dict:
        self.stream.synchronize()
        return outputs


class _CudaPythonIO:
    """cuda-python device allocations when PyTorch has no CUDA; outputs come back as numpy arrays."""

    def __init__(self, index: int):
        from cuda.bindings import runtime as cudart

        self.cudart = cudart
        _set_device(index)
        self.stream = _cuda_check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.stream_handle = int(self.stream)  # what execute_async_v3 takes

    def __del__(self):
        try:
            self.cudart.cudaStreamDestroy(self.stream)
        except Exception:  # noqa: BLE001 - at interpreter exit the driver may be gone first
            pass

    def upload(self, array, dtype: np.dtype) -> "_DeviceArray":
        host = np.ascontiguousarray(np.asarray(array, dtype=dtype))
        buf = self.empty(host.shape, dtype)
        _cuda_check(self.cudart.cudaMemcpyAsync(buf.ptr, host.ctypes.data, host.nbytes,
                                                self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice,
                                                self.stream), "cudaMemcpyAsync")
        buf.host = host  # keep the source alive until the copy is done
        return buf

    def empty(self, shape, dtype: np.dtype) -> "_DeviceArray":
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return _DeviceArray(self.cudart, _cuda_check(self.cudart.cudaMalloc(max(nbytes, 1)), "cudaMalloc"),
                            tuple(shape), np.dtype(dtype))

    @staticmethod
    def pointer(buf) -> int:
        return int(buf.ptr)

    def finish(self, outputs: dict, keep) -> dict:
        result = {}
        for name, buf in outputs.items():
            host = np.empty(buf.shape, buf.dtype)
            _cuda_check(self.cudart.cudaMemcpyAsync(host.ctypes.data, buf.ptr, host.nbytes,
                                                    self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                                                    self.stream), "cudaMemcpyAsync")
            result[name] = host
        _cuda_check(self.cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        return result


class _DeviceArray:
    """A cudaMalloc'd buffer freed with the object."""

    def __init__(self, cudart, ptr, shape, dtype):
        self.cudart, self.ptr, self.shape, self.dtype = cudart, int(ptr), shape, dtype

    def __del__(self):
        try:
            self.cudart.cudaFree(self.ptr)
        except Exception:  # interpreter shutdown: the driver frees the memory anyway
            pass


def _set_device(index: int) -> None:
    from cuda.bindings import runtime as cudart

    _cuda_check(cudart.cudaSetDevice(index), "cudaSetDevice")


def _cuda_check(result, what: str):
    """Unwrap a cuda-python call's (status, *values)."""
    err, *values = result
    if int(err) != 0:
        raise ModelFileError(f"CUDA call {what} failed ({err})")
    return values[0] if len(values) == 1 else (values or None)


def _concat(arrays):
    if isinstance(arrays[0], np.ndarray):
        return np.concatenate(arrays)
    import torch

    return torch.cat(arrays)


def _torch_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _torch_dtype(dtype: np.dtype):
    import torch

    return torch.from_numpy(np.empty(0, dtype)).dtype


def _device_index(device: str | None) -> int:
    kind, index = parse_device(device or "cuda")
    if kind != "cuda":
        raise BackendUnavailableError(f"a TensorRT engine runs on a CUDA device ('cuda' or 'cuda:N'), not '{device}'")
    return index or 0


def _fmt(shape) -> str:
    return "x".join(str(d) for d in shape)
