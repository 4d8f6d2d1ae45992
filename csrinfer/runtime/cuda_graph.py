"""CUDA-graph capture of a tensor function for static shapes (the GPU fast path).

A forward pass of CSR-D2S launches several hundred small kernels (the head runs on five
grids); launched one by one from Python the GPU waits on the CPU. Captured once per input
shape as a CUDA graph, a replay launches them all at once.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch


class CudaGraphRunner:
    """Call ``fn(x)`` through a CUDA graph captured for each new (shape, dtype, device) of ``x``.

    Args:
        fn: tensor -> tensor or tuple of tensors; no host synchronisation inside (no
            ``.item()``, ``nonzero``), only CUDA work on the current stream.
        max_graphs: shapes kept captured; further shapes run ``fn`` eagerly (one warning),
            since each graph holds its own memory.
        warmup: eager calls on a side stream before capture (cuDNN autotuning, lazy module
            loads such as the fused op's PTX happen there, not in the graph).

    The returned tensors are the graph's static outputs: they are overwritten by the next
    call, so copy what must outlive it. Calls must not overlap (one thread at a time).
    """

    def __init__(self, fn: Callable, max_graphs: int = 4, warmup: int = 2):
        self.fn, self.max_graphs, self.warmup = fn, max_graphs, warmup
        self.graphs: dict[tuple, tuple[torch.Tensor, torch.cuda.CUDAGraph, object]] = {}
        self._warned = False

    def __call__(self, x: torch.Tensor):
        key = (tuple(x.shape), x.dtype, x.device)
        entry = self.graphs.get(key)
        if entry is None:
            if len(self.graphs) >= self.max_graphs:
                if not self._warned:
                    warnings.warn(f"CudaGraphRunner: more than {self.max_graphs} input shapes; "
                                  "new shapes run without a CUDA graph", stacklevel=2)
                    self._warned = True
                return self.fn(x)
            entry = self.graphs[key] = self._capture(x)
        static_in, graph, static_out = entry
        with torch.cuda.device(x.device):
            static_in.copy_(x)
            graph.replay()
        return static_out

    def _capture(self, x: torch.Tensor):
        # Everything on x's device, made current: torch.cuda.graph captures on a stream of the
        # current device, so a model on cuda:1 with cuda:0 current would record nothing.
        with torch.cuda.device(x.device):
            static_in = x.clone()
            side = torch.cuda.Stream(x.device)
            side.wait_stream(torch.cuda.current_stream(x.device))
            with torch.cuda.stream(side):
                for _ in range(self.warmup):
                    self.fn(static_in)
            torch.cuda.current_stream(x.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=torch.cuda.Stream(x.device)):
                static_out = self.fn(static_in)
        return static_in, graph, static_out
