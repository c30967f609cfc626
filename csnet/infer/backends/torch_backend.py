"""The PyTorch backend: the model in eval mode under ``torch.inference_mode``, on CPU or CUDA."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from csnet.infer.backends import Backend

__all__ = ["TorchBackend"]


class TorchBackend(Backend):
    """Runs ``model`` (a :class:`~csnet.models.CSNet` or any module with its signature).

    Args:
        model: moved to ``device`` and put in eval mode (the caller's module itself, not a copy).
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (already resolved).
    """

    name = "torch"

    def __init__(self, model: nn.Module, device: str = "cpu") -> None:
        self.device = str(device)
        self.model = model.to(self.device).eval()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        with torch.inference_mode():
            if self.device != "cpu":
                x = x.pin_memory().to(self.device, non_blocking=True)
            logits = self.model(x)
        return logits.float().cpu().numpy()
