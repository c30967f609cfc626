"""Dynamic weight decay (DWD), SPEC 3 / Gao et al., ECCV 2020 (arXiv 2003.05643), Sec. 3.3.

For every governed BatchNorm channel ``c``, DWD adds to the loss

    R = 0.5 * sum_c w_c * mean_batch(|GAP(y_c)|) * gamma_c ** 2

where ``gamma_c`` is the BN weight, ``y`` is the output *after that BN and the activation that follows it*
(detached: it only sets the strength), GAP is global average pooling and ``w_c`` a per-target weight (the
per-scale weight ``w_scale`` for CSNet, 1.0 in the release). The loss is ``task_loss + strength * R``, so the
gradient it adds to ``gamma_c`` is ``strength * w_c * mean|GAP(y_c)| * gamma_c``: an L2 decay whose strength
follows how strongly the channel fires. Weak channels are driven to ~0 (and later pruned), strong ones keep a
stable distribution.

DWD is model-agnostic: a :class:`DecayTarget` names a BN layer, the module whose output is ``y`` (the
activation after it, or the BN itself) and an optional function applied to that output (for activations that
are functional calls, e.g. ``torch.relu``, rather than modules). :func:`csnet_targets` builds the release's
choice for CSNet; :func:`batchnorm_targets` covers "every BN of a model", e.g. a small ResNet.

Statistics are gathered by forward hooks, only while the observed module is in training mode, in float32
(safe under autocast). Under DistributedDataParallel each rank uses its own batch's statistics; DDP averages
the resulting gradients, so the effective decay strength is the mean over ranks of the per-rank statistics
(equal in expectation to the single-process one). Hooks sit on the inner modules, so a DDP- or
compile-wrapped model works unchanged as long as the targets were taken from the unwrapped model.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Sequence, Union

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["DecayTarget", "DynamicWeightDecay", "batchnorm_targets", "csnet_targets"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class DecayTarget:
    """One BatchNorm layer governed by DWD.

    Attributes:
        bn: the BatchNorm layer whose ``weight`` (gamma) is decayed.
        observe: the module whose forward output is ``y`` (the activation right after ``bn``; ``bn``
            itself when the activation is functional or absent).
        activation: applied to ``observe``'s output before pooling (e.g. ``torch.relu`` when the
            network calls it functionally); ``None`` uses the output as is.
        weight: this target's weight in ``R`` (``w_scale`` for CSNet).
        name: for logs and reports.
    """

    bn: _BatchNorm
    observe: nn.Module
    activation: Optional[Callable[[Tensor], Tensor]] = None
    weight: float = 1.0
    name: str = ""


Selection = Union[Callable[[nn.Module], Iterable[DecayTarget]], Sequence[Union[DecayTarget, _BatchNorm]]]


def _unwrap(model: nn.Module) -> nn.Module:
    """The user's module inside DDP / DataParallel / torch.compile wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def csnet_targets(model: nn.Module, scale_weights: Sequence[float] = (1.0,)) -> list[DecayTarget]:
    """The release's DWD targets for a CSNet: every BN inside an ILBlock, observed after its PReLU.

    CSF (cross-stage fusion) BNs are not decayed. ``scale_weights[k]`` weights the BNs of scale ``k``
    (the last value repeats for coarser scales).
    """
    from csnet.models.csnet import ILBlock
    from csnet.nn.goct import ScaleBNPReLU

    if not scale_weights:
        raise ValueError("scale_weights needs at least one value")
    targets = []
    for block_name, block in _unwrap(model).named_modules():
        if not isinstance(block, ILBlock):
            continue
        for name, module in block.named_modules():
            if not isinstance(module, ScaleBNPReLU):
                continue
            for key, bn in module.bns.items():
                scale = int(key)
                weight = float(scale_weights[min(scale, len(scale_weights) - 1)])
                targets.append(DecayTarget(bn, module.acts[key], None, weight,
                                           f"{block_name}.{name}.bns.{key}"))
    return targets


def batchnorm_targets(model: nn.Module, activation: Optional[Callable[[Tensor], Tensor]] = None,
                      exclude: Iterable[nn.Module] = ()) -> list[DecayTarget]:
    """Every BatchNorm of ``model`` (but ``exclude``), observed at its own output through ``activation``.

    For networks that apply the activation functionally after each BN (``F.relu(bn(x))``), pass
    ``activation=torch.relu``; where the activation is a module, build :class:`DecayTarget` yourself with
    ``observe=`` that module.
    """
    excluded = {id(m) for m in exclude}
    return [DecayTarget(m, m, activation, 1.0, name) for name, m in _unwrap(model).named_modules()
            if isinstance(m, _BatchNorm) and m.affine and id(m) not in excluded]


class DynamicWeightDecay:
    """Gathers activation statistics by hooks and gives the DWD penalty ``R``.

    Typical use::

        dwd = DynamicWeightDecay(model, strength=3.0)          # CSNet: csnet_targets by default
        loss = bce(model(x), y) + dwd.penalty()                # penalty() = strength * R
        optimizer = Adam([{"params": dwd.decayed_parameters(), "weight_decay": 0}, ...])

    Args:
        model: the network (possibly DDP-wrapped; targets come from the inner module).
        strength: the factor on ``R`` (3.0 in the release).
        select: which BNs to govern: a callable ``model -> DecayTarget iterable``, or a list of
            :class:`DecayTarget` / BN modules (a bare BN is observed at its own output). Default: the
            ILBlock BNs of a CSNet (:func:`csnet_targets`), or every BN of any other model.
        scale_weights: per-scale weights for the default CSNet selection (``w_scale``).

    A forward in training mode records, per target, ``mean_batch |GAP(y)|`` (float32, detached); several
    forwards before :meth:`penalty` are averaged. :meth:`penalty` consumes the records.
    """

    def __init__(self, model: nn.Module, strength: float = 3.0, select: Optional[Selection] = None,
                 scale_weights: Sequence[float] = (1.0,)) -> None:
        if strength < 0:
            raise ValueError(f"DWD strength must be >= 0, got {strength}")
        self.strength = float(strength)
        inner = _unwrap(model)
        if select is None:
            from csnet.models.csnet import CSNet

            targets = (csnet_targets(inner, scale_weights) if isinstance(inner, CSNet)
                       else batchnorm_targets(inner))
        elif callable(select):
            targets = list(select(inner))
        else:
            targets = [t if isinstance(t, DecayTarget) else DecayTarget(t, t, None, 1.0, type(t).__name__)
                       for t in select]
        for target in targets:
            if not isinstance(target.bn, _BatchNorm) or target.bn.weight is None:
                raise ValueError(f"DWD target {target.name or target.bn!r} is not an affine BatchNorm layer")
        if len({id(t.bn) for t in targets}) != len(targets):
            raise ValueError("a BatchNorm layer is selected twice for DWD")
        self.targets: list[DecayTarget] = targets
        self._sums: list[Optional[Tensor]] = [None] * len(targets)
        self._counts: list[int] = [0] * len(targets)
        self._handles = [target.observe.register_forward_hook(self._make_hook(index))
                         for index, target in enumerate(targets)]
        logger.debug("DWD governs %d BatchNorm layers (%d channels), strength %g", len(targets),
                     sum(t.bn.num_features for t in targets), self.strength)

    def _make_hook(self, index: int):
        target = self.targets[index]

        def hook(module: nn.Module, inputs, output) -> None:
            if not module.training or not torch.is_grad_enabled():
                return
            y = output.detach()
            if target.activation is not None:
                y = target.activation(y)
            # float32 whatever autocast produced: the statistic scales a loss term.
            stat = y.float().mean(dim=tuple(range(2, y.dim()))).abs().mean(dim=0)
            previous = self._sums[index]
            self._sums[index] = stat if previous is None else previous + stat
            self._counts[index] += 1

        return hook

    def decayed_parameters(self) -> list[nn.Parameter]:
        """The BN weights (gammas) DWD decays: give them no standard weight decay."""
        return [t.bn.weight for t in self.targets]

    def activation_strength(self) -> list[Optional[Tensor]]:
        """Per target, the recorded ``mean_batch |GAP(y)|`` (float32, ``C``), ``None`` if not recorded."""
        return [None if s is None else s / c for s, c in zip(self._sums, self._counts)]

    def regularizer(self, consume: bool = True) -> Tensor:
        """``R`` (float32 scalar) from the statistics recorded since the last call."""
        total: Optional[Tensor] = None
        for target, stat in zip(self.targets, self.activation_strength()):
            if stat is None:
                continue
            gamma = target.bn.weight.float()
            term = (stat.to(gamma.device) * gamma.square()).sum() * (0.5 * target.weight)
            total = term if total is None else total + term
        if consume:
            self.reset()
        if total is None:
            if self.targets:
                logger.debug("DWD penalty asked for without a training forward: 0")
            device = self.targets[0].bn.weight.device if self.targets else None
            return torch.zeros((), dtype=torch.float32, device=device)
        return total

    def penalty(self, consume: bool = True) -> Tensor:
        """``strength * R``, to add to the task loss (float32 scalar)."""
        return self.regularizer(consume) * self.strength

    def reset(self) -> None:
        """Forget the recorded statistics (e.g. after a forward whose loss is not used)."""
        self._sums = [None] * len(self.targets)
        self._counts = [0] * len(self.targets)

    def remove(self) -> None:
        """Remove the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.reset()

    def __len__(self) -> int:
        return len(self.targets)

    def __repr__(self) -> str:
        return (f"DynamicWeightDecay(strength={self.strength}, layers={len(self.targets)}, "
                f"channels={sum(t.bn.num_features for t in self.targets)})")
