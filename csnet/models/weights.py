"""Metadata of the weights bundled with csnet, kept apart from the architectures they fit.

Weights are data: ``csnet/weights/<file>``; each entry says what produced them and how well they do.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from csnet.constants import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["WeightInfo", "PRETRAINED", "pretrained_path"]


@dataclass(frozen=True)
class WeightInfo:
    """Where a bundled weight file is and what is known about it."""

    file: str
    architecture: str
    sha256: str = ""
    input_size: tuple[int, int] = (224, 224)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    license: str = "MIT"
    training_data: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    recipe: str = ""


PRETRAINED: dict[str, WeightInfo] = {}
"""Registered names that have bundled weights. Filled in when the project ships weights it trained."""


def pretrained_path(name: str) -> Path:
    """Path of the bundled weight file for ``name``."""
    if name not in PRETRAINED:
        raise KeyError(f"no bundled weights for {name!r}; bundled: {', '.join(sorted(PRETRAINED)) or 'none yet'}")
    path = Path(str(resources.files("csnet").joinpath("weights", PRETRAINED[name].file)))
    if not path.is_file():
        raise FileNotFoundError(f"bundled weight file missing from the installed package: {path}")
    return path
