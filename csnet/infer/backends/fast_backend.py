"""The fast-path backend: the model rebuilt by :mod:`csnet.infer.fastpath` (BN folded, links merged, NHWC).

On the CPU it runs the traced and frozen fused core (``fast-jit``): the fastest PyTorch runtime measured in
``benchmarks/RESULTS.md`` (csnet_l_x1, batch 1, 224 x 224, 2 threads, runs A-J: 19-33 ms median against 21-40 ms
untraced, 33-52 ms ONNX Runtime, 56-117 ms eager), and what ``--backend auto`` runs when OpenVINO is not installed
(the ``openvino`` backend is faster: 14.7-17.9 ms in run J). On CUDA it runs the untraced fused core in float32
(the same numbers as the model, within 1e-4 on the logits). It never changes process-wide settings (threads,
allocator): the CLI does that for the processes it owns.
"""
from __future__ import annotations

import logging

from torch import nn

from csnet.infer.backends import BackendError
from csnet.infer.backends.torch_backend import TorchBackend

__all__ = ["FastBackend"]

log = logging.getLogger(__name__)


class FastBackend(TorchBackend):
    """Runs :func:`~csnet.infer.fastpath.optimize_for_inference` of ``model``.

    Args:
        model: a :class:`~csnet.models.CSNet` (left unchanged; the fast path holds its own folded copy).
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (already resolved).

    Raises:
        BackendError: ``model`` is not a CSNet (the fast path knows only CSNet's graph).
    """

    name = "fast"

    def __init__(self, model: nn.Module, device: str = "cpu") -> None:
        from csnet.infer.fast_backends import jit_fast
        from csnet.infer.fastpath import optimize_for_inference
        from csnet.models.csnet import CSNet

        if not isinstance(model, CSNet):
            raise BackendError(f"the fast backend runs CSNet models, not {type(model).__name__}; use --backend torch")
        self.device = str(device)
        fast = optimize_for_inference(model.eval(), channels_last=True, device=self.device)
        self.runtime = "fast"
        self.model = fast  # what TorchBackend.__call__ runs
        if self.device == "cpu":
            try:
                self.model = jit_fast(fast)
                self.runtime = "fast-jit"
            except (RuntimeError, ValueError) as error:  # tracing is an optimization, never a requirement
                log.warning("tracing the fast path failed (%s); running it untraced", error)

    def describe(self) -> dict:
        return {**super().describe(), "runtime": self.runtime}
