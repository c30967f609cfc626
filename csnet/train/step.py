"""One optimization step (forward, loss, backward, update): the trainer and ``csnet benchmark --train`` run
this same object, so the speed the benchmark reports is the speed of training.

Speed comes only from choices that keep the maths: the memory format (``channels_last``), mixed precision
(bf16 autocast with fp32 master weights and an fp32 loss; fp16 with a GradScaler on CUDA) and the batch
size. Nothing here syncs with the host: the returned losses stay on the device until the caller reads them.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from csnet.train.losses import saliency_loss
from csnet.train.optim import param_groups

__all__ = ["TrainStep", "build_train_step"]


class TrainStep:
    """``step(images, masks) -> (loss, task_bce, regularizer)`` (detached 0-d tensors on the device).

    Args:
        module: the network to run (the DDP wrapper under DDP).
        parameters_of: the bare model (for gradient clipping).
        optimizer, scaler: as built by the trainer.
        loss: ``bce`` or ``bce+iou`` (:func:`csnet.train.losses.saliency_loss`).
        amp_dtype: autocast dtype, ``None`` for fp32.
        memory_format: ``torch.channels_last`` or ``torch.contiguous_format`` for the input batch (the model
            must already be in it).
        regularizer: a callable returning the extra loss term (dynamic weight decay), or ``None``.
        grad_clip: clip the gradient norm to this (``None``: off).
    """

    def __init__(self, module: nn.Module, parameters_of: nn.Module, optimizer: torch.optim.Optimizer,
                 scaler: torch.amp.GradScaler, *, loss: str = "bce", amp_dtype: Optional[torch.dtype] = None,
                 memory_format: torch.memory_format = torch.contiguous_format, regularizer=None,
                 grad_clip: Optional[float] = None) -> None:
        self.module, self.model, self.optimizer, self.scaler = module, parameters_of, optimizer, scaler
        self.loss, self.amp_dtype, self.memory_format = loss, amp_dtype, memory_format
        self.regularizer, self.grad_clip = regularizer, grad_clip

    def __call__(self, images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        device = next(self.model.parameters()).device
        images = images.to(device, non_blocking=True, memory_format=self.memory_format)
        masks = masks.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            logits = self.module(images)
        task, bce = saliency_loss(logits, masks, self.loss)
        reg = self.regularizer() if self.regularizer is not None else bce.new_zeros(())
        total = task + reg
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if self.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return total.detach(), bce.detach(), reg.detach()


def build_train_step(module: nn.Module, model: nn.Module, config, amp_dtype: Optional[torch.dtype],
                     dwd=None) -> TrainStep:
    """The step of ``config`` (a :class:`~csnet.train.config.TrainConfig`): Adam over the release's parameter
    groups, a GradScaler enabled for fp16 only, ``dwd`` (a :class:`~csnet.channels.dwd.DynamicWeightDecay`)
    as the regularizer and its BN weights out of L2 decay."""
    device = next(model.parameters()).device
    decay = 0.0 if config.weight_decay_mode == "none" else config.weight_decay
    groups = param_groups(model, lr=config.lr, weight_decay=decay, eps=config.eps,
                          no_decay=dwd.decayed_parameters() if dwd is not None else (),
                          release_scaling=config.release_param_scaling)
    # The optimizer holds exactly this model's parameters (the release's fine-tune step did not).
    optimizer = torch.optim.Adam(groups, lr=config.lr, betas=tuple(config.betas), eps=config.eps)
    scaler = torch.amp.GradScaler(device.type if device.type == "cuda" else "cpu",
                                  enabled=amp_dtype == torch.float16)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    return TrainStep(module, model, optimizer, scaler, loss=config.loss, amp_dtype=amp_dtype,
                     memory_format=memory_format, regularizer=dwd.penalty if dwd is not None else None,
                     grad_clip=config.grad_clip)
