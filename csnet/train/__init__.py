"""Training: the recipe (:class:`TrainConfig`), the loop (:class:`Trainer`), checkpoints, DDP.

>>> from csnet.train import TrainConfig, train
>>> config = TrainConfig.load("configs/release.json").replace(data=("DUTS-TR",))   # doctest: +SKIP
>>> train(config, "runs/release")                                                  # doctest: +SKIP
"""
from csnet.train.config import ConfigError, TrainConfig

_TRAINER_NAMES = ("DivergedError", "Trainer", "TrainingError", "TrainResult", "resume_config", "train", "validate")


def __getattr__(name: str):
    # The trainer imports torch; the config does not, so `csnet train --help` and `csnet --help` stay fast.
    if name in _TRAINER_NAMES:
        from csnet.train import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'csnet.train' has no attribute {name!r}")


__all__ = ["ConfigError", "DivergedError", "TrainConfig", "Trainer", "TrainingError", "TrainResult",
           "resume_config", "train", "validate"]
