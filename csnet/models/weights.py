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
    #: Each stage that produced the weights, oldest first (data, teacher, epochs, sizes, held-out figures),
    #: so a later session can warm-start from them and a user can see where they came from.
    lineage: tuple[str, ...] = ()


PRETRAINED: dict[str, WeightInfo] = {
    "csnet_pascal": WeightInfo(
        file="csnet_pascal.safetensors",
        architecture="csnet_pascal",
        sha256="2ef5cee940b9882f9292ea8ab4f0e7ad511aff07289cf83125de7457323bf343",
        input_size=(224, 224),
        license="MIT (trained here; PASCAL-S images are for research use)",
        training_data="PASCAL-S minus a held-out 15% (tools/make_split.py, seed 0: 722 images) + HumanSeg (290)",
        metrics={"maxF": 0.6600, "meanF": 0.5655, "MAE": 0.1976, "S": 0.7060},  # held-out 128 PASCAL-S images
        recipe="docs/TRAINING.md version 2: csnet_x2 + plain weight decay 30 epochs at 64 px on a 2-core CPU, "
               "pruned at |gamma| < 1e-20, fine-tuned 8 epochs at 64 px and 12 at 224 px",
        lineage=(
            "1. csnet_x2 from scratch, plain weight decay, 30 epochs at 64 px on PASCAL-S train (722) + HumanSeg (290)",
            "2. pruned at |gamma| < 1e-20: 788,631 -> 94,672 parameters",
            "3. fine-tuned 8 epochs at 64 px, then 12 at 224 px: held-out max F 0.6600, MAE 0.1976",
        ),
    ),
}
"""Registered names that have bundled weights, all trained by this project."""


def pretrained_path(name: str) -> Path:
    """Path of the bundled weight file for ``name``."""
    if name not in PRETRAINED:
        raise KeyError(f"no bundled weights for {name!r}; bundled: {', '.join(sorted(PRETRAINED)) or 'none yet'}")
    path = Path(str(resources.files("csnet").joinpath("weights", PRETRAINED[name].file)))
    if not path.is_file():
        raise FileNotFoundError(f"bundled weight file missing from the installed package: {path}")
    return path
