"""The OpenVINO backend: the fused CSNet core compiled by OpenVINO's CPU plugin (``csnet[openvino]``).

On the 2-core reference CPU it is the fastest runtime csnet has (``benchmarks/RESULTS.md``, run J: csnet_l_x1,
batch 1, 224 x 224, 2 threads, float32), with the same logits as the model (within 1e-4). See
:class:`csnet.infer.fast_backends.OpenVinoCSNet` for what it runs and why in that form.
"""
from __future__ import annotations

import importlib.util
from typing import Optional

import numpy as np
import torch
from torch import nn

from csnet.infer.backends import Backend, BackendError

__all__ = ["OpenVinoBackend"]


class OpenVinoBackend(Backend):
    """Runs a :class:`~csnet.models.CSNet` through OpenVINO on the CPU, in float32.

    Args:
        model: a CSNet (left unchanged; the backend compiles its own folded copy).
        device: ``"cpu"`` only.
        threads: inference threads (``None``: torch's current thread count, which ``csnet predict`` sets).

    Raises:
        BackendError: not a CSNet, not the CPU, or OpenVINO is not installed.
    """

    name = "openvino"

    def __init__(self, model: nn.Module, device: str = "cpu", threads: Optional[int] = None) -> None:
        from csnet.models.csnet import CSNet

        if str(device) != "cpu":
            raise BackendError(f"the openvino backend runs on the CPU, not {device!r}; use --backend fast")
        if not isinstance(model, CSNet):
            raise BackendError(f"the openvino backend runs CSNet models, not {type(model).__name__}; "
                               "use --backend torch")
        if not self.available():
            raise BackendError("the openvino backend needs OpenVINO: pip install 'csnet[openvino]'")
        from csnet.infer.fast_backends import OpenVinoCSNet, openvino_fast_path

        self.device = "cpu"
        self.threads = int(threads or torch.get_num_threads())
        self.model = OpenVinoCSNet(openvino_fast_path(model.eval()), threads=self.threads)

    @classmethod
    def available(cls) -> bool:
        return importlib.util.find_spec("openvino") is not None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        with torch.inference_mode():
            return self.model(x).numpy()

    def describe(self) -> dict:
        import openvino

        return {**super().describe(), "runtime": f"openvino {openvino.__version__}", "threads": self.threads}
