"""What the PyTorch runtimes share: NumPy in, the module under ``torch.inference_mode``, NumPy out."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from csnet.infer.runtimes import Runtime

__all__ = ["TorchRuntime", "TorchPreset"]


@dataclass(frozen=True)
class TorchPreset:
    dtype: str = "float32"  #: the precision the network runs in (inputs and logits stay float32)


class TorchRuntime(Runtime):
    """A runtime whose :meth:`setup` sets :attr:`module`, a torch module on :attr:`device` (float32 in, any out)."""

    presets: ClassVar[dict[str, TorchPreset]] = {name: TorchPreset(name) for name in ("float32", "float16", "bfloat16")}
    module: nn.Module

    @property
    def dtype(self) -> torch.dtype:
        from csnet.infer.fused import resolve_dtype

        return resolve_dtype(self.preset.dtype)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        with torch.inference_mode():
            if self.device != "cpu":
                x = x.pin_memory().to(self.device, non_blocking=True)
            logits = self.module(x)
        return logits.float().cpu().numpy()
