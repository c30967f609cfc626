"""Training losses on logits ``(N, 1, H, W)`` and targets in [0, 1] of the same shape (hard or soft)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["soft_iou_loss", "saliency_loss"]


def soft_iou_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``1 - sum(p t) / sum(p + t - p t)`` per image, averaged over the batch (``p = sigmoid(logits)``).

    BCE scores each pixel on its own, so a small model can lower it by predicting ~0.5 on every hard pixel;
    the IoU term is computed over the whole map, so it pays only for confident, complete silhouettes. The
    ``+1`` in both sums keeps an empty target (no salient pixel) from dividing by zero.
    """
    p = torch.sigmoid(logits.float())
    t = targets.float()
    inter = (p * t).sum(dim=(1, 2, 3))
    union = (p + t - p * t).sum(dim=(1, 2, 3))
    return (1.0 - (inter + 1.0) / (union + 1.0)).mean()


def saliency_loss(logits: torch.Tensor, targets: torch.Tensor, kind: str = "bce") -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, bce)`` for ``kind`` ``bce`` (the release) or ``bce+iou``; computed in float32 under autocast."""
    bce = F.binary_cross_entropy_with_logits(logits.float(), targets.float())
    if kind == "bce":
        return bce, bce
    if kind == "bce+iou":
        return bce + soft_iou_loss(logits, targets), bce
    raise ValueError(f"unknown loss {kind!r}")
