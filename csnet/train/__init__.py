"""Training: the recipe (:class:`TrainConfig`), the loop (:class:`Trainer`), checkpoints, DDP.

>>> from csnet.train import TrainConfig, train
>>> config = TrainConfig.load("configs/release.json").replace(data=("DUTS-TR",))   # doctest: +SKIP
>>> train(config, "runs/release")                                                  # doctest: +SKIP
"""
from csnet.train.config import ConfigError, TrainConfig
from csnet.train.trainer import DivergedError, Trainer, TrainingError, TrainResult, resume_config, train, validate

__all__ = ["ConfigError", "DivergedError", "TrainConfig", "Trainer", "TrainingError", "TrainResult",
           "resume_config", "train", "validate"]
