"""The ``compile`` runtime: the fused CSNet's core through ``torch.compile`` (inductor).

Compiling takes minutes on a small busy CPU; it is paid on the first call of every new input shape (``csnet
benchmark`` reports it as ``first_call_s``). On the 2-core reference CPU it is slower than ``torchscript``
(``benchmarks/RESULTS.md``); it is here for GPUs and larger CPUs.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from csnet.infer.fused import FusedCSNet, fuse
from csnet.infer.runtimes._torch import TorchRuntime

__all__ = ["CompileRuntime", "CompilePreset", "compile_fused"]


@dataclass(frozen=True)
class CompilePreset:
    dtype: str = "float32"
    mode: Optional[str] = None  #: torch.compile's mode (None: inductor's default)


class CompileRuntime(TorchRuntime):
    """Runs :func:`compile_fused` of the ``"compile"`` fused variant (plain ops, which inductor fuses best)."""

    name = "compile"
    presets = {"float32": CompilePreset(), "float16": CompilePreset("float16"), "bfloat16": CompilePreset("bfloat16"),
               "max-autotune": CompilePreset(mode="max-autotune")}

    def setup(self, model) -> None:
        self.module = compile_fused(fuse(model, "compile", dtype=self.dtype, device=self.device),
                                    mode=self.preset.mode)


def _plain_convs(core: nn.Module) -> nn.Module:
    """The fx core with direct ``torch.mkldnn_convolution`` calls turned back into ``torch.conv2d``
    (the same op; dynamo cannot trace the direct oneDNN call)."""
    if not isinstance(core, torch.fx.GraphModule):
        raise TypeError("torch.compile needs the torch.fx core of optimize_for_inference, not a traced one")
    graph = copy.deepcopy(core.graph)
    for node in graph.nodes:
        if node.op == "call_function" and node.target is torch.mkldnn_convolution:
            x, weight, bias, padding, stride, dilation, groups = node.args
            node.target = torch.conv2d
            node.args = (x, weight, bias, stride, padding, dilation, groups)
    return torch.fx.GraphModule(core, graph)


def compile_fused(fused: FusedCSNet, mode: Optional[str] = None, backend: str = "inductor") -> FusedCSNet:
    """``fused`` with its core through ``torch.compile(fullgraph=True)``: one graph, no breaks."""
    return fused.with_core(torch.compile(_plain_convs(fused.core), mode=mode, fullgraph=True, backend=backend))
