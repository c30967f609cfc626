"""The ``cuda-graph`` runtime: the fused CSNet captured as one CUDA graph per input shape (CUDA only).

A replay launches the whole network at once instead of one kernel per op, which is what batch-1 latency on a
GPU is made of. The input is copied into the graph's static input, the graph is replayed, and the logits are
copied back.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from csnet.infer.fused import fuse
from csnet.infer.runtimes._torch import TorchRuntime

__all__ = ["CudaGraphRuntime"]


class CudaGraphRuntime(TorchRuntime):
    """Runs the ``"torch"`` fused variant (NHWC) in the preset's dtype through CUDA graphs."""

    name = "cuda-graph"
    devices = ("cuda",)
    warmup = 3

    def setup(self, model) -> None:
        self.module = fuse(model, "torch", dtype=self.dtype, device=self.device)
        self._graphs: dict[tuple[int, ...], tuple[torch.cuda.CUDAGraph, Tensor, Tensor]] = {}

    def _capture(self, shape: tuple[int, ...]) -> tuple[torch.cuda.CUDAGraph, Tensor, Tensor]:
        static_in = torch.zeros(shape, dtype=torch.float32, device=self.device)
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(self.warmup):
                self.module(static_in)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), torch.inference_mode():
            static_out = self.module(static_in)
        return graph, static_in, static_out

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        key = tuple(x.shape)
        if key not in self._graphs:
            self._graphs[key] = self._capture(key)
        graph, static_in, static_out = self._graphs[key]
        with torch.inference_mode():
            static_in.copy_(x.pin_memory(), non_blocking=True)
            graph.replay()
            return static_out.float().cpu().numpy()
