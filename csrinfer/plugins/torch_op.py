"""``torch.ops.csrinfer.d2s_fused``: the fused D2S kernel as a PyTorch custom op (design.md §3).

- CUDA tensors (float32, float16): ``d2s_fused.cu``, compiled to PTX by :mod:`.ptx`, loaded with
  the CUDA driver API of cuda-python (``cuModuleLoadData``) and launched with
  ``cuLaunchKernel`` on torch's current stream, so it works inside CUDA-graph capture. Every
  driver call's status is checked.
- Every other device or dtype: the plain-PyTorch reference
  (:func:`csrinfer.model.d2s.d2s_fused_reference`), which stays the ground truth.
- A fake implementation gives the output's shape, so ``torch.compile`` and ``torch.export``
  trace through the op; the backward pass goes through the reference.

Weights and bias are cast to the input's dtype (the kernel takes one dtype; it accumulates
in FP32 either way).

Example:
    >>> from csrinfer.plugins.torch_op import d2s_fused
    >>> y = d2s_fused(x.cuda().half(), block.depthwise.weight.cuda(), block.depthwise.bias.cuda())
"""

from __future__ import annotations

import ctypes
import threading

import torch

from csrinfer.errors import BackendUnavailableError
from csrinfer.model.d2s import DepthToSpace, d2s_fused_reference
from csrinfer.plugins.launch import launch_params, output_shape

KERNEL_DTYPES = (torch.float32, torch.float16)


def check_inputs(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> None:
    """x [N, C, H, W] with C % 4 == 0, weight [C/4, 1, 3, 3], bias [C/4], on x's device;
    ValueError otherwise."""
    if x.dim() != 4 or x.shape[1] % 4:
        raise ValueError(f"d2s_fused: x must be [N, C, H, W] with C divisible by 4, got {tuple(x.shape)}")
    if weight.device != x.device or bias.device != x.device:  # else the kernel reads a host pointer
        raise ValueError(f"d2s_fused: x, weight and bias must be on one device, got {x.device}, {weight.device} "
                         f"and {bias.device}")
    co = x.shape[1] // 4
    if tuple(weight.shape) != (co, 1, 3, 3) or tuple(bias.shape) != (co,):
        raise ValueError(f"d2s_fused: for x {tuple(x.shape)} weight must be [{co}, 1, 3, 3] and bias [{co}], "
                         f"got {tuple(weight.shape)} and {tuple(bias.shape)}")


@torch.library.custom_op("csrinfer::d2s_fused", mutates_args=())
def d2s_fused(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """PixelShuffle(2) -> depthwise 3x3 (zero padding) -> +bias: x [N,C,H,W] -> [N,C/4,2H,2W], NCHW."""
    check_inputs(x, weight, bias)
    return d2s_fused_reference(x, weight.to(x.dtype), bias.to(x.dtype)).contiguous()


@d2s_fused.register_fake
def _d2s_fused_fake(x, weight, bias):
    check_inputs(x, weight, bias)
    n, c, h, w = x.shape
    return x.new_empty((n, c // 4, 2 * h, 2 * w))


@d2s_fused.register_kernel("cuda")
def _d2s_fused_cuda(x, weight, bias):
    check_inputs(x, weight, bias)
    if x.dtype not in KERNEL_DTYPES:  # bfloat16/float64: the kernel is written for FP32 and FP16 only
        return d2s_fused_reference(x, weight.to(x.dtype), bias.to(x.dtype)).contiguous()
    x = x.contiguous()
    out = x.new_empty(output_shape(*x.shape))
    if out.numel():
        launch(x, weight.to(x.dtype).contiguous(), bias.to(x.dtype).contiguous(), out)
    return out


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad):
    # Inference is what the kernel is for; gradients go through the reference so the op is
    # still correct if a fused model is trained.
    x, weight, bias = ctx.saved_tensors
    with torch.enable_grad():
        leaves = [t.detach().requires_grad_(need) for t, need in zip((x, weight, bias), ctx.needs_input_grad)]
        out = d2s_fused_reference(leaves[0], leaves[1].to(x.dtype), leaves[2].to(x.dtype))
        wanted = [t for t in leaves if t.requires_grad]
        grads = iter(torch.autograd.grad(out, wanted, grad))
    return tuple(next(grads) if t.requires_grad else None for t in leaves)


d2s_fused.register_autograd(_backward, setup_context=_setup_context)


def enable_fused_d2s(model: torch.nn.Module, enabled: bool = True) -> int:
    """Point every ``DepthToSpace`` block of ``model`` at the custom op (or back to the reference).

    Returns the number of blocks changed. On CPU the op runs the reference, so this is safe anywhere.
    """
    blocks = [m for m in model.modules() if isinstance(m, DepthToSpace)]
    for m in blocks:
        m.fused_op = torch.ops.csrinfer.d2s_fused if enabled else None
    return len(blocks)


# --- CUDA driver side -------------------------------------------------------------------------

_lock = threading.Lock()
_modules: dict[int, tuple[object, dict[str, object]]] = {}  # device index -> (CUmodule, name -> CUfunction)


def _driver():
    try:
        from cuda.bindings import driver
    except ImportError:
        raise BackendUnavailableError(
            "the fused D2S CUDA op needs cuda-python (pip install 'csrinfer[cuda]')") from None
    return driver


def cuda_check(result, what: str):
    """Unwrap a cuda-python driver call's (CUresult, *values); raise RuntimeError naming the error."""
    driver = _driver()
    status, *values = result if isinstance(result, tuple) else (result,)
    if status != driver.CUresult.CUDA_SUCCESS:
        _, name = driver.cuGetErrorName(status)
        _, text = driver.cuGetErrorString(status)
        name = name.decode() if isinstance(name, bytes) else str(status)
        text = text.decode() if isinstance(text, bytes) else ""
        raise RuntimeError(f"CUDA {what} failed: {name} ({text})")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def _load_module(index: int):
    """Compile (cached) and load the PTX into device ``index``'s primary context, which torch uses."""
    from csrinfer.plugins import ptx as ptx_mod

    driver = _driver()
    cuda_check(driver.cuInit(0), "cuInit")
    dev = cuda_check(driver.cuDeviceGet(index), "cuDeviceGet")
    ctx = cuda_check(driver.cuDevicePrimaryCtxRetain(dev), "cuDevicePrimaryCtxRetain")
    cuda_check(driver.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
    arch = ptx_mod.normalize_arch(torch.cuda.get_device_capability(index))
    try:
        text = ptx_mod.compile_ptx(arch=arch)
    except ptx_mod.KernelCompileError:  # a compiler older than the GPU: the portable PTX still runs
        text = ptx_mod.compile_ptx(arch=ptx_mod.PORTABLE_ARCH)
    status, module = _load_ptx(driver, text)
    if status == driver.CUresult.CUDA_ERROR_UNSUPPORTED_PTX_VERSION:
        # NVRTC newer than the driver: nvcc (usually installed with the driver's toolkit) may match it.
        status, module = _load_ptx(driver, ptx_mod.compile_ptx(arch=arch, compiler="nvcc"))
    cuda_check((status, module), f"cuModuleLoadData (PTX for {arch})")
    return module, {}


def _load_ptx(driver, text: str):
    image = ctypes.create_string_buffer(text.encode())  # NUL-terminated, alive during the call
    return driver.cuModuleLoadData(ctypes.addressof(image))


def _function(index: int, name: str):
    with _lock:
        if index not in _modules:
            _modules[index] = _load_module(index)
        module, functions = _modules[index]
        if name not in functions:
            functions[name] = cuda_check(_driver().cuModuleGetFunction(module, name.encode()),
                                         f"cuModuleGetFunction({name})")
        return functions[name]


def launch(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, out: torch.Tensor,
           vec: int | None = None, rows: int | None = None) -> None:
    """Launch the kernel on torch's current stream: out [N,C/4,2H,2W] <- x [N,C,H,W] (all contiguous,
    one CUDA device, one dtype). ``vec``/``rows`` override the variant (benchmarks sweep them)."""
    n, c, h, w = x.shape
    aligned = x.data_ptr() % 16 == 0 and out.data_ptr() % 16 == 0
    p = launch_params(n, c, h, w, x.dtype, aligned=aligned, vec=vec, rows=rows)
    index = x.device.index if x.device.index is not None else torch.cuda.current_device()
    with torch.cuda.device(index):
        fn = _function(index, p.kernel)
        stream = torch.cuda.current_stream(index).cuda_stream
        values = [ctypes.c_void_p(t.data_ptr()) for t in (x, weight, bias, out)]
        values += [ctypes.c_int(v) for v in (n, c, h, w)]
        params = (ctypes.c_void_p * len(values))(*[ctypes.addressof(v) for v in values])
        driver = _driver()
        cuda_check(driver.cuLaunchKernel(fn, *p.grid, *p.block, p.shared_mem, driver.CUstream(stream),
                                         ctypes.addressof(params), 0), f"cuLaunchKernel({p.kernel})")
