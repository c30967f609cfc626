"""The ``torchscript`` runtime: the fused CSNet (:mod:`csnet.infer.fused`) traced and frozen.

Tracing turns the fused core's straight-line code into one TorchScript graph and freezing prepacks oneDNN's
weights on the CPU; sizes stay dynamic (every upsampling is a fixed scale factor). Without OpenVINO it is the
fastest CPU runtime csnet has (``benchmarks/RESULTS.md``).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from csnet.infer.fused import FusedCSNet, fuse
from csnet.infer.runtimes._torch import TorchRuntime

__all__ = ["TorchScriptRuntime", "trace_fused"]


class TorchScriptRuntime(TorchRuntime):
    """Runs :func:`trace_fused` of the ``"torch"`` fused variant (NHWC, the CPU kernels on the CPU)."""

    name = "torchscript"

    def setup(self, model) -> None:
        self.module = trace_fused(fuse(model, "torch", dtype=self.dtype, device=self.device))


def trace_fused(fused: FusedCSNet, example: Optional[Tensor] = None) -> FusedCSNet:
    """A copy of ``fused`` whose core is traced and frozen TorchScript (padding stays in Python, outside)."""
    if example is None:
        example = torch.zeros(1, fused.in_chans, 4 * fused.pad_multiple, 4 * fused.pad_multiple)
    device = next(iter(fused.core.buffers())).device
    with torch.no_grad():
        traced = torch.jit.trace(fused.core, fused.prepare(example.to(device)), check_trace=False)
        frozen = torch.jit.freeze(traced.eval())
    return fused.with_core(frozen).eval()
