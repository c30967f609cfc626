"""Fused BatchNorm + PReLU for training: the one part of the step worth compiling on the CPU.

In eager mode every ``ScaleBNPReLU`` runs BatchNorm and PReLU as separate kernels, forward and backward,
each reading and writing the whole activation: at CSNet's widths (10-80 channels) those passes, not the
convolutions, were most of a 224 px training step (benchmarks/RESULTS.md, run T2). ``torch.compile`` of the
pair alone lets Inductor fuse them into one reduction and one elementwise pass each way, on the CPU (C++)
and on CUDA (Triton) alike. The region is small and compiled with dynamic shapes (seconds, where compiling
the whole network takes many minutes on a small CPU: benchmarks/RESULTS.md). Dynamo may still compile a graph
per block width and per new batch size; each is compiled once per process, and past the recompile limit the
pair runs eagerly rather than stopping the run.

The maths is the module's: batch statistics, the running-stat update with the module's momentum, the same
per-channel PReLU. ``TrainConfig.compile = 'norm-act'`` turns it on. Only evaluation
is left eager, so validation, export and inference see plain modules.
"""
from __future__ import annotations

import logging
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from csnet.nn.goct import MultiScale, ScaleBNPReLU

__all__ = ["bn_prelu", "CompiledScaleBNPReLU", "compile_norm_act"]

log = logging.getLogger(__name__)


def bn_prelu(x: Tensor, weight: Tensor, bias: Tensor, running_mean: Tensor, running_var: Tensor,
             prelu_weight: Tensor, momentum: float, eps: float) -> Tensor:
    """Training-mode ``BatchNorm2d`` (batch statistics; running stats updated in place) then ``PReLU``.

    Shapes: ``x`` ``B x C x H x W``; every other tensor ``C``.
    """
    y = F.batch_norm(x, running_mean, running_var, weight, bias, True, momentum, eps)
    return F.prelu(y, prelu_weight)


_compiled: Optional[Callable[..., Tensor]] = None


def _kernel() -> Callable[..., Tensor]:
    """The compiled :func:`bn_prelu`, built on first use and shared by every block of the process."""
    global _compiled
    if _compiled is None:
        import torch._dynamo

        # Each block's BN/PReLU parameters have their own width; without this Dynamo specializes on parameter
        # shapes and recompiles per width (28 graphs for csnet_l_x2) instead of one dynamic graph.
        torch._dynamo.config.force_parameter_static_shapes = False
        # Dynamo's DDP optimizer (splitting a compiled graph at DDP's gradient buckets) makes the parameters
        # static again inside a DDP forward: a graph per width, and a first step minutes long. This region holds
        # no bucket boundary to split at.
        torch._dynamo.config.optimize_ddp = False
        # More graphs remain: bf16 and fp32 inputs under autocast, widths of 1 (always specialized), and the
        # guards a new batch size (an epoch's last, partial batch) or layout fails. A long run met more than 32.
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 256)
        # Not fullgraph: past the limit Dynamo then runs the pair eagerly (same maths) instead of failing the run.
        _compiled = torch.compile(bn_prelu, dynamic=True)
    return _compiled


def _fusable(bn: nn.Module) -> bool:
    # SyncBatchNorm must reduce across ranks and a BN without running stats has another formula: both stay eager.
    return type(bn) is nn.BatchNorm2d and bn.track_running_stats and bn.affine


class CompiledScaleBNPReLU(ScaleBNPReLU):
    """:class:`~csnet.nn.goct.ScaleBNPReLU` whose training forward runs the compiled :func:`bn_prelu`.

    Same submodules and state-dict keys as the block it replaces (it is made from one by
    :func:`compile_norm_act`), so checkpoints and the optimizer see exactly the same parameters.
    """

    def forward(self, x: MultiScale) -> MultiScale:
        if not self.training:
            return super().forward(x)
        out: list[Optional[Tensor]] = []
        for k, t in enumerate(x):
            if self.channels[k] == 0 or t is None:
                out.append(None)
                continue
            bn, act = self.bns[str(k)], self.acts[str(k)]
            bn.num_batches_tracked.add_(1)  # what BatchNorm2d.forward does in training
            momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
            out.append(_kernel()(t, bn.weight, bn.bias, bn.running_mean, bn.running_var, act.weight,
                                 momentum, bn.eps))
        return tuple(out)


def compile_norm_act(model: nn.Module) -> int:
    """Turn every :class:`ScaleBNPReLU` of ``model`` whose BatchNorms are plain ``BatchNorm2d`` into a
    :class:`CompiledScaleBNPReLU`, in place; returns how many blocks changed. Call before DDP wraps the model."""
    changed = 0
    for module in model.modules():
        if type(module) is ScaleBNPReLU and all(_fusable(bn) for bn in module.bns.values()):
            module.__class__ = CompiledScaleBNPReLU  # same object, same parameters: only forward changes
            changed += 1
    log.debug("compiled BatchNorm + PReLU in %d blocks", changed)
    return changed
