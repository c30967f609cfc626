"""The ``eager`` runtime: the model as defined, in PyTorch, on the CPU or CUDA (the reference the others match)."""
from __future__ import annotations

import copy

from torch import nn

from csnet.infer.runtimes._torch import TorchRuntime

__all__ = ["EagerRuntime"]


class EagerRuntime(TorchRuntime):
    """Runs a copy of the module itself (any module with CSNet's signature) in eval mode, in the preset's dtype."""

    name = "eager"
    takes_any_module = True

    def setup(self, model: nn.Module) -> None:
        self.module = _Cast(copy.deepcopy(model).to(self.device, self.dtype).eval(), self.dtype)


class _Cast(nn.Module):
    """Feeds the wrapped module its dtype and gives float32 logits back."""

    def __init__(self, module: nn.Module, dtype) -> None:
        super().__init__()
        self.inner, self.dtype = module, dtype

    def forward(self, x):
        return self.inner(x.to(self.dtype)).float()
