"""The training recipe as one frozen dataclass that round-trips through JSON.

``configs/release.json`` is the released recipe (SPEC 4); ``csnet train --config FILE`` loads a file and
command-line options override single fields.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from csnet.constants import AUGMENT_RECIPES

__all__ = ["TrainConfig", "ConfigError", "RUNTIME_FIELDS"]

WEIGHT_DECAY_MODES = ("dwd", "standard", "none")
AMP_MODES = ("auto", "off", "bf16", "fp16")
CACHE_MODES = ("memory", "disk", "none")
DEVICES = ("auto", "cpu", "cuda")
LOSSES = ("bce", "bce+iou")
LR_SCHEDULES = ("step", "cosine")
LR_SCHEDULE_UNITS = ("epoch", "iteration")
COMPILE_MODES = ("off", "norm-act")  # csnet.train.compile

#: Fields that may change when a run is resumed: they do not change what is computed.
RUNTIME_FIELDS = frozenset({"epochs", "workers", "device", "cache", "cache_dir", "tensorboard", "log_every",
                            "val_every", "label_dir", "checkpoint_every", "compile"})


class ConfigError(ValueError):
    """A training config that is invalid; the message names the field."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run (defaults: the released recipe, SPEC 4).

    Attributes:
        model: registered model to train from scratch (``csnet_x2`` in the release).
        init: a ``.safetensors`` model file to start from instead (fine-tuning, e.g. a pruned model); its
            architecture comes from the file and ``model`` is ignored.
        data: training dataset folders or list files.
        val: validation dataset folders or list files; empty: ``val_fraction`` of ``data``, or none.
        val_fraction: share of ``data`` held out for validation (deterministic, see ``split_seed``).
        split_seed: seed of the held-out split.
        size: training input side; ``val_size``: validation input side (default ``size``).
        epochs, batch_size: per run; ``batch_size`` is per process under DDP.
        lr, betas, eps: Adam.
        weight_decay: L2 decay (Adam's coupled ``weight_decay``) on all parameters except the DWD-decayed
            BN weights in ``dwd`` mode.
        weight_decay_mode: ``dwd`` (BCE + ``dwd_strength`` x DWD, BN gammas of ILBlocks excluded from L2),
            ``standard`` (plain L2 on everything: the comparison), ``none``.
        dwd_strength: the factor on the DWD term (3.0).
        dwd_scale_weights: ``w_scale`` per scale (the last value repeats).
        release_param_scaling: emulate the release's x100 forward factor on depthwise, dilated and
            single-scale conv weights (see :mod:`csnet.train.optim`).
        milestones, lr_gamma: MultiStepLR (epochs).
        val_every: validate every N epochs (and after the last).
        seed: model init, shuffling and augmentation draws.
        augment: the release's crop/flip augmentation.
        augment_recipe: ``release`` (crop/flip only), ``strong`` (also a rotation of up to +-15 degrees, a
            zoom of 0.8-1.25x and a colour jitter of the image, :class:`csnet.data.augment.StrongAugment`) or
            ``copy-paste`` (also, for half the samples, the object of another ground-truth pair scaled to
            0.5-1x and pasted on, :class:`csnet.data.augment.CopyPasteAugment`; donors are never the
            teacher's soft maps, :attr:`csnet.data.pairs.ImagePair.teacher`).
        ema_decay: keep an exponential moving average of the weights (BN statistics included), updated after
            every optimizer step (``None``: off, as in the release); validation and the saved models then
            use the averaged weights.
        workers: DataLoader worker processes.
        cache: ``memory`` / ``disk`` (``cache_dir``, default ``RUN_DIR/cache``) / ``none`` (decoded into
            memory for this run only).
        device: ``auto`` (CUDA if present), ``cpu``, ``cuda``.
        amp: ``auto`` (bf16 on CUDA when supported, off on CPU), ``off``, ``bf16``, ``fp16`` (GradScaler).
        gpu_augment: keep the cached dataset on the GPU and augment there.
        sync_bn: SyncBatchNorm under DDP (CUDA only).
        grad_clip: clip the gradient norm (``None``: off, as in the release).
        tensorboard: also write TensorBoard events to ``RUN_DIR/tb`` (when tensorboard is installed).
        log_every: steps between loss checks / progress updates.
        checkpoint_every: also checkpoint every N steps inside an epoch (``None``: at epoch ends only), so a
            killed run loses at most N steps of a long epoch; a resume continues from that step exactly.
        channels_last: run the model and batches in NHWC memory format (same maths; faster on CPUs and
            tensor cores).
        compile: ``off`` (eager) or ``norm-act``: each BatchNorm + PReLU pair runs as one ``torch.compile``
            region in training (:mod:`csnet.train.compile`; same maths, compiled once at the first step).
        loss: ``bce`` (the release) or ``bce+iou`` (BCE plus a soft IoU term per image, which rewards whole,
            confident silhouettes rather than per-pixel hedging).
        lr_schedule: ``step`` (MultiStepLR at ``milestones``, the release) or ``cosine`` (linear warm-up over
            ``warmup_epochs``, then cosine decay to zero at ``epochs``).
        warmup_epochs: epochs of linear warm-up (``cosine`` only).
        lr_schedule_unit: ``epoch`` (the release: the learning rate moves at each epoch's end) or
            ``iteration`` (the same schedule, in epochs still, followed at every optimizer step, so a stage of
            a few epochs warms up and anneals smoothly instead of in a few jumps).
        soft_masks: keep gray masks soft instead of binarizing them at 128 (soft teacher maps as targets).
        teacher: an ONNX saliency model (JSON card beside it) that labels ``unlabeled`` before training.
        unlabeled: folders of photos without masks, labelled by ``teacher`` into ``label_dir`` and trained on
            with the teacher's soft maps as targets.
        label_dir: where the teacher's maps go (default ``RUN_DIR/labels``; reused when it holds them).
        limit: train on at most this many pairs (the first of the shuffled list): quick trials.
    """

    model: str = "csnet_x2"
    init: Optional[str] = None
    data: tuple[str, ...] = ()
    val: tuple[str, ...] = ()
    val_fraction: float = 0.0
    split_seed: int = 0
    size: int = 224
    val_size: Optional[int] = None
    epochs: int = 300
    batch_size: int = 24
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)
    eps: float = 1e-8
    weight_decay: float = 5e-3
    weight_decay_mode: str = "dwd"
    dwd_strength: float = 3.0
    dwd_scale_weights: tuple[float, ...] = (1.0,)
    release_param_scaling: bool = True
    milestones: tuple[int, ...] = (200, 250)
    lr_gamma: float = 0.1
    val_every: int = 1
    seed: int = 0
    augment: bool = True
    augment_recipe: str = "release"
    ema_decay: Optional[float] = None
    workers: int = 2
    cache: str = "memory"
    cache_dir: Optional[str] = None
    device: str = "auto"
    amp: str = "auto"
    gpu_augment: bool = False
    sync_bn: bool = False
    grad_clip: Optional[float] = None
    tensorboard: bool = True
    log_every: int = 10
    checkpoint_every: Optional[int] = None
    channels_last: bool = False
    compile: str = "off"
    loss: str = "bce"
    lr_schedule: str = "step"
    warmup_epochs: int = 0
    lr_schedule_unit: str = "epoch"
    soft_masks: bool = False
    teacher: Optional[str] = None
    unlabeled: tuple[str, ...] = ()
    label_dir: Optional[str] = None
    limit: Optional[int] = None

    def __post_init__(self) -> None:
        def check(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        check(self.size >= 16 and self.size % 16 == 0, f"size must be a positive multiple of 16, got {self.size}")
        check(self.val_size is None or (self.val_size >= 16 and self.val_size % 16 == 0),
              f"val_size must be a positive multiple of 16, got {self.val_size}")
        check(0.0 <= self.val_fraction < 1.0, f"val_fraction must be in [0, 1), got {self.val_fraction}")
        check(not (self.val and self.val_fraction), "give val or val_fraction, not both")
        check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        check(self.lr > 0, f"lr must be > 0, got {self.lr}")
        check(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), f"betas must be two values in [0, 1), got {self.betas}")
        check(self.eps > 0, f"eps must be > 0, got {self.eps}")
        check(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        check(self.weight_decay_mode in WEIGHT_DECAY_MODES,
              f"weight_decay_mode must be one of {', '.join(WEIGHT_DECAY_MODES)}, got {self.weight_decay_mode!r}")
        check(self.dwd_strength >= 0, f"dwd_strength must be >= 0, got {self.dwd_strength}")
        check(len(self.dwd_scale_weights) >= 1 and all(w >= 0 for w in self.dwd_scale_weights),
              f"dwd_scale_weights must be non-negative values, got {self.dwd_scale_weights}")
        check(all(m >= 1 for m in self.milestones) and list(self.milestones) == sorted(self.milestones),
              f"milestones must be increasing epochs >= 1, got {self.milestones}")
        check(0 < self.lr_gamma <= 1, f"lr_gamma must be in (0, 1], got {self.lr_gamma}")
        check(self.val_every >= 1, f"val_every must be >= 1, got {self.val_every}")
        check(self.augment_recipe in AUGMENT_RECIPES,
              f"augment_recipe must be one of {', '.join(AUGMENT_RECIPES)}, got {self.augment_recipe!r}")
        check(self.ema_decay is None or 0.0 < self.ema_decay < 1.0,
              f"ema_decay must be in (0, 1), got {self.ema_decay}")
        check(self.workers >= 0, f"workers must be >= 0, got {self.workers}")
        check(self.cache in CACHE_MODES, f"cache must be one of {', '.join(CACHE_MODES)}, got {self.cache!r}")
        check(self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        check(self.amp in AMP_MODES, f"amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}")
        check(self.grad_clip is None or self.grad_clip > 0, f"grad_clip must be > 0, got {self.grad_clip}")
        check(self.log_every >= 1, f"log_every must be >= 1, got {self.log_every}")
        check(self.checkpoint_every is None or self.checkpoint_every >= 1,
              f"checkpoint_every must be >= 1, got {self.checkpoint_every}")
        check(self.compile in COMPILE_MODES,
              f"compile must be one of {', '.join(COMPILE_MODES)}, got {self.compile!r}")
        check(self.loss in LOSSES, f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        check(self.lr_schedule in LR_SCHEDULES,
              f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        check(self.lr_schedule_unit in LR_SCHEDULE_UNITS, f"lr_schedule_unit must be one of "
              f"{', '.join(LR_SCHEDULE_UNITS)}, got {self.lr_schedule_unit!r}")
        check(0 <= self.warmup_epochs < self.epochs or self.warmup_epochs == 0,
              f"warmup_epochs must be in [0, epochs), got {self.warmup_epochs}")
        check(bool(self.teacher) == bool(self.unlabeled), "teacher and unlabeled go together")
        check(self.limit is None or self.limit >= 2, f"limit must be >= 2, got {self.limit}")

    @property
    def resolved_val_size(self) -> int:
        return self.val_size or self.size

    # -- JSON -----------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; unknown keys and wrong types are errors. ``_``-prefixed keys are
        comments and are ignored."""
        if not isinstance(data, dict):
            raise ConfigError(f"a training config must be a JSON object, got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if not k.startswith("_")}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(f"unknown training config fields: {', '.join(unknown)}")
        return cls(**{name: _coerce(name, value, cls.__dataclass_fields__[name].type) for name, value in data.items()})

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"not valid JSON ({error})") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> "TrainConfig":
        """Read a JSON config file."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(f"cannot read training config {path}: {error.strerror or error}") from None
        try:
            return cls.from_json(text)
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from None

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with ``changes`` (coerced as when read from JSON)."""
        fields = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - fields)
        if unknown:
            raise ConfigError(f"unknown training config fields: {', '.join(unknown)}")
        coerced = {k: _coerce(k, v, self.__dataclass_fields__[k].type) for k, v in changes.items()}
        return dataclasses.replace(self, **coerced)


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """JSON value -> field type (lists -> tuples, ints -> floats), with a clear error otherwise."""
    text = str(annotation)
    optional = "Optional" in text or "None" in text
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{name} must not be null")
    try:
        if "tuple[str" in text:
            if isinstance(value, str):
                value = [v for v in value.split(",") if v.strip()] if value else []
            if not all(isinstance(v, str) for v in value):
                raise TypeError
            return tuple(value)
        if "tuple[float" in text:
            return tuple(_number(v, float) for v in value)
        if "tuple[int" in text:
            return tuple(_number(v, int) for v in value)
        if "bool" in text:
            if not isinstance(value, bool):
                raise TypeError
            return value
        if "float" in text:
            return _number(value, float)
        if "int" in text:
            return _number(value, int)
        if "str" in text:
            if not isinstance(value, str):
                raise TypeError
            return value
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: bad value {value!r} (expected {text.replace('typing.', '')})") from None
    return value


def _number(value: Any, kind: type) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError
    if kind is int:
        if float(value) != int(value):
            raise ValueError
        return int(value)
    return float(value)
