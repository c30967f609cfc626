"""Model introspection: parameters, MACs (torch.utils.flop_counter) and per-stage output shapes."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from csnet.models.csnet import CSNet

__all__ = ["ModelSummary", "summarize", "count_macs"]


@dataclass(frozen=True)
class ModelSummary:
    """``macs`` are multiply-accumulates; FLOPs = 2 x MACs."""

    name: str
    params: int
    macs: int
    input_size: tuple[int, int]
    stages: list[dict]
    output_shape: tuple[int, ...]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["flops"] = 2 * self.macs
        return data


def count_macs(model: nn.Module, size: tuple[int, int] = (224, 224)) -> int:
    """Multiply-accumulates of one forward pass on a ``1 x 3 x H x W`` input."""
    x = torch.zeros(1, 3, *size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2


def summarize(model: CSNet, size: tuple[int, int] = (224, 224), name: str = "") -> ModelSummary:
    was_training = model.training
    model.eval()
    x = torch.zeros(1, 3, *size)
    stages = []
    with torch.no_grad():
        multiple = model.config.pad_multiple
        padded = torch.nn.functional.pad(x, (0, (-size[1]) % multiple, 0, (-size[0]) % multiple))
        for index, feature in enumerate(model.forward_features(padded)):
            shapes = [None if t is None else list(t.shape) for t in feature]
            stages.append({"stage": index, "blocks": len(model.stages[index]), "scales": shapes})
        output = model(x)
    model.train(was_training)
    return ModelSummary(
        name=name or model.config.name,
        params=sum(p.numel() for p in model.parameters()),
        macs=count_macs(model, size),
        input_size=tuple(size),
        stages=stages,
        output_shape=tuple(output.shape),
    )
