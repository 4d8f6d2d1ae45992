"""``torch.ops.csrinfer.d2s_fused``: reference on CPU, traceable by torch.compile/export, the kernel on CUDA."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from csrinfer.model.d2s import DepthToSpace, d2s_fused_reference
from csrinfer.plugins.torch_op import d2s_fused, enable_fused_d2s

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (CUDA)")


def inputs(shape, dtype=torch.float32, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g)
    w = torch.randn(shape[1] // 4, 1, 3, 3, generator=g)
    b = torch.randn(shape[1] // 4, generator=g)
    return x.to(device, dtype), w.to(device, dtype), b.to(device, dtype)


def test_cpu_is_the_reference():
    from tests.model.test_d2s import independent_d2s

    x, w, b = inputs((2, 16, 5, 7), dtype=torch.float64)
    out = torch.ops.csrinfer.d2s_fused(x, w, b)
    np.testing.assert_allclose(out.numpy(), independent_d2s(x.numpy(), w.numpy(), b.numpy()), rtol=1e-12, atol=1e-12)
    assert out.is_contiguous()


def test_fake_implementation_gives_the_output_shape():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        out = d2s_fused(torch.empty(3, 8, 4, 6), torch.empty(2, 1, 3, 3), torch.empty(2))
    assert out.shape == (3, 2, 8, 12) and out.dtype == torch.float32


def test_torch_library_opcheck():
    x, w, b = inputs((1, 8, 3, 4))
    torch.library.opcheck(d2s_fused, (x, w, b), test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic"))


def test_wrong_shapes_are_one_clear_error():
    with pytest.raises(ValueError, match=r"weight must be \[2, 1, 3, 3\]"):
        d2s_fused(torch.randn(1, 8, 3, 3), torch.randn(4, 1, 3, 3), torch.randn(2))
    with pytest.raises(ValueError, match="divisible by 4"):
        d2s_fused(torch.randn(1, 6, 3, 3), torch.randn(1, 1, 3, 3), torch.randn(1))
    # a weight left on another device: on a GPU the kernel would read a host pointer
    with pytest.raises(ValueError, match="must be on one device, got cpu, meta and cpu"):
        d2s_fused(torch.randn(1, 8, 3, 3), torch.randn(2, 1, 3, 3, device="meta"), torch.randn(2))


def test_gradients_match_the_reference():
    x, w, b = inputs((1, 8, 3, 4))
    got = [t.clone().requires_grad_() for t in (x, w, b)]
    want = [t.clone().requires_grad_() for t in (x, w, b)]
    grad = torch.randn(1, 2, 6, 8)
    torch.autograd.backward(d2s_fused(*got), grad)
    torch.autograd.backward(d2s_fused_reference(*want), grad)
    for g, r in zip(got, want):
        torch.testing.assert_close(g.grad, r.grad)


def test_enable_fused_d2s_switches_every_block_and_back():
    block = torch.nn.Sequential(DepthToSpace(16, 16), DepthToSpace(16, 8))
    x = torch.randn(1, 16, 4, 5)
    expected = block(x)
    assert enable_fused_d2s(block) == 2
    assert all(m.fused_op is torch.ops.csrinfer.d2s_fused for m in block if isinstance(m, DepthToSpace))
    torch.testing.assert_close(block(x), expected)
    enable_fused_d2s(block, enabled=False)
    assert all(m.fused_op is None for m in block)


def test_export_and_compile_trace_the_op():
    block = DepthToSpace(16, 16)
    enable_fused_d2s(block)
    x = torch.randn(2, 16, 5, 6)
    program = torch.export.export(block, (x,))
    assert any(n.target is torch.ops.csrinfer.d2s_fused.default for n in program.graph.nodes)
    torch.testing.assert_close(program.module()(x), block(x))
    compiled = torch.compile(block, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), block(x))


# --- on a GPU --------------------------------------------------------------------------------

@needs_cuda
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float16, 2e-3)])
@pytest.mark.parametrize("shape", [(1, 256, 25, 42), (2, 256, 50, 84), (3, 8, 7, 5), (2, 12, 1, 1), (1, 256, 13, 17)])
def test_cuda_kernel_matches_the_reference(shape, dtype, tol):
    x, w, b = inputs(shape, dtype, "cuda", seed=sum(shape))
    out = d2s_fused(x, w, b)
    torch.cuda.synchronize()
    ref = d2s_fused_reference(x.double(), w.double(), b.double())
    assert torch.isfinite(out).all()
    assert ((out.double() - ref).norm() / ref.norm()).item() <= tol


@needs_cuda
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 2e-3)])
@pytest.mark.parametrize("off_x,off_out", [(1, 0), (0, 1), (1, 1)])
def test_cuda_kernel_writes_every_output_even_misaligned(dtype, tol, off_x, off_out):
    """One element off 16-byte alignment (input, output or both): the unaligned variant, no fault."""
    from csrinfer.plugins.torch_op import launch

    def shifted(t, off):
        return torch.cat([t.new_full((off,), float("nan")), t.flatten()])[off:].view(t.shape)

    x, w, b = inputs((2, 16, 6, 8), dtype=dtype, device="cuda", seed=3)
    x = shifted(x, off_x)
    out = shifted(torch.full((2, 4, 12, 16), float("nan"), dtype=dtype, device="cuda"), off_out)
    assert (x.data_ptr() % 16 != 0) == bool(off_x) and (out.data_ptr() % 16 != 0) == bool(off_out)
    launch(x, w, b, out)
    torch.cuda.synchronize()
    assert not out.isnan().any()  # every element written
    ref = d2s_fused_reference(x.double(), w.double(), b.double())
    assert ((out.double() - ref).norm() / ref.norm()).item() <= tol


@needs_cuda
def test_cuda_graph_capture_and_replay():
    x, w, b = inputs((1, 32, 6, 8), device="cuda", seed=5)
    d2s_fused(x, w, b)  # loads the module outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = d2s_fused(x, w, b)
    x.copy_(torch.randn_like(x))
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(out, d2s_fused_reference(x, w, b), rtol=1e-5, atol=1e-5)
