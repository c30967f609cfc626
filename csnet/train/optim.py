"""Optimizer parameter groups: DWD exclusions and the release's x100 parametrization.

The release multiplied the weights of depthwise, dilated and single-scale convs by 100 in forward
(SPEC 1; the importer folds the factor into the weights, so our model has no such factor). Training our
weights ``w = 100 * w_r`` with Adam reproduces training ``w_r`` exactly when, for those weights only,

* ``lr`` is multiplied by 100: Adam's step on ``w_r`` is ~``lr`` whatever the gradient scale, and a step of
  ``d`` on ``w_r`` is a step of ``100 d`` on ``w``;
* ``weight_decay`` is divided by 1e4: the release adds ``wd * w_r = (wd / 100) * w / 100`` to a gradient
  that is ``100x`` ours, i.e. ``wd / 1e4`` relative to ours (Adam is invariant to the common factor);
* ``eps`` is divided by 100: it is added to ``sqrt(v)``, which is 100x smaller for ``w`` than for ``w_r``.

With the three, the trajectories agree in exact arithmetic (not only "up to eps"). The release initialized
``w_r`` with PyTorch's default conv init (Kaiming-uniform, ``a = sqrt(5)``), so its effective weights
started 100x larger than that init; :func:`release_init_` reproduces that for a model trained from scratch.
Without both, Adam's relative step on those weights would be ~100x larger than in the release.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Optional

import torch
from torch import nn

__all__ = ["RELEASE_GAIN", "release_scaled_convs", "release_init_", "param_groups", "WarmupCosine", "lr_scheduler"]

RELEASE_GAIN = 100.0


def _is_single_scale(conv) -> bool:
    return sum(1 for c in conv.in_channels if c) == 1 and sum(1 for c in conv.out_channels if c) == 1


def release_scaled_convs(model: nn.Module) -> list[nn.Conv2d]:
    """The convs whose weights the release multiplied by 100: depthwise, dilated and single-scale gOctConvs.

    Multi-scale gOctConvs and the 1x1 head are not scaled. Works on any CSNet (pruned ones included).
    """
    from csnet.models.csnet import ParallelDilatedConvs
    from csnet.nn.goct import GOctConv

    # Dilation-1 branches of the CSF's parallel dilated convs were x100 convs in the release too.
    dilated_branches = {id(b) for m in model.modules() if isinstance(m, ParallelDilatedConvs) for b in m.branches}
    convs: list[nn.Conv2d] = []
    seen: set[int] = set()
    for module in model.modules():
        if not isinstance(module, GOctConv):
            continue
        if module.depthwise or module.dilation > 1 or _is_single_scale(module) or id(module) in dilated_branches:
            for conv in module.convs.values():
                if id(conv) not in seen:
                    seen.add(id(conv))
                    convs.append(conv)
    return convs



@torch.no_grad()
def release_init_(model: nn.Module) -> int:
    """Initialize ``model`` as the release did, seen through our parametrization.

    The release built its convs with PyTorch's default init (Kaiming-uniform, ``a = sqrt(5)``; its x100 conv
    class re-implements exactly that) and, as far as its public code shows, ran no model-wide init. So every
    conv gets ``nn.Conv2d.reset_parameters()`` and the release-scaled ones are then multiplied by 100 (their
    raw init times the forward factor). Beyond matching Adam's relative step sizes, this keeps the 1x1 head
    small: a fan-out Kaiming init of a 1-channel head gives weights of std sqrt(2) and initial logits of
    several units. Uses the global torch RNG (seed it first); returns the number of x100 convs.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.reset_parameters()
    convs = release_scaled_convs(model)
    for conv in convs:
        conv.weight.mul_(RELEASE_GAIN)
    return len(convs)


def param_groups(model: nn.Module, *, lr: float, weight_decay: float, eps: float,
                 no_decay: Iterable[nn.Parameter] = (), release_scaling: bool = True) -> list[dict[str, Any]]:
    """Adam parameter groups for ``model``.

    Args:
        model: the (unwrapped) network; every trainable parameter lands in exactly one group.
        lr, weight_decay, eps: the base values.
        no_decay: parameters that get no L2 decay (the DWD-decayed BN weights).
        release_scaling: give :func:`release_scaled_convs` weights ``lr x 100``, ``weight_decay / 1e4``,
            ``eps / 100`` (see the module docstring).

    Groups carry a ``name`` key (``base``, ``no_decay``, ``x100``) for logs.
    """
    excluded = {id(p) for p in no_decay}
    scaled = {id(c.weight) for c in release_scaled_convs(model)} if release_scaling else set()
    groups: dict[str, list[nn.Parameter]] = {"base": [], "no_decay": [], "x100": []}
    for param in model.parameters():
        if not param.requires_grad:
            continue
        if id(param) in excluded:
            groups["no_decay"].append(param)
        elif id(param) in scaled:
            groups["x100"].append(param)
        else:
            groups["base"].append(param)
    settings: dict[str, dict[str, Optional[float]]] = {
        "base": {"lr": lr, "weight_decay": weight_decay, "eps": eps},
        "no_decay": {"lr": lr, "weight_decay": 0.0, "eps": eps},
        "x100": {"lr": lr * RELEASE_GAIN, "weight_decay": weight_decay / RELEASE_GAIN ** 2, "eps": eps / RELEASE_GAIN},
    }
    return [{"name": name, "params": params, **settings[name]} for name, params in groups.items() if params]


class WarmupCosine:
    """Factor on the base learning rate at ``epoch``: linear warm-up over ``warmup`` epochs, then a cosine
    from 1 to 0 reached at ``epochs`` (all three counted in the schedule's unit: epochs or iterations).
    A class (not a lambda) so the schedule is plain data."""

    def __init__(self, epochs: int, warmup: int = 0) -> None:
        self.epochs, self.warmup = int(epochs), int(warmup)

    def __call__(self, epoch: int) -> float:
        if epoch < self.warmup:
            return (epoch + 1) / (self.warmup + 1)
        span = max(1, self.epochs - self.warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(epoch - self.warmup, span) / span))


def lr_scheduler(optimizer: torch.optim.Optimizer, config,
                 steps_per_epoch: int = 1) -> torch.optim.lr_scheduler.LRScheduler:
    """The schedule of ``config`` (a :class:`~csnet.train.config.TrainConfig`), counted in its unit.

    The schedule is declared in epochs; with ``lr_schedule_unit == "iteration"`` the scheduler is stepped
    after every optimizer step, so its epochs are scaled by ``steps_per_epoch`` here, once.
    """
    per = steps_per_epoch if config.lr_schedule_unit == "iteration" else 1
    if config.lr_schedule == "cosine":
        factor = WarmupCosine(config.epochs * per, config.warmup_epochs * per)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, [factor] * len(optimizer.param_groups))
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, [m * per for m in config.milestones], config.lr_gamma)
