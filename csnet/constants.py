"""Constants shared across csnet; this module is their one definition (stdlib only, cheap to import).

``IMAGENET_MEAN`` / ``IMAGENET_STD``: the per-channel RGB mean and standard deviation, on [0, 1]
pixel values, that the network input is normalized with, ``(x - mean) / std``. The released CSNet
models were trained and tested with them (SPEC 4), so training augmentation, the test protocol,
inference and the weight metadata must all use these exact values.
"""
from __future__ import annotations

__all__ = ["AUGMENT_RECIPES", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: Training augmentation recipes (csnet.data.augment): ``release`` is the trim crop + flip of SPEC 4,
#: ``strong`` adds rotation, zoom and colour jitter, ``copy-paste`` pastes the object of another
#: ground-truth pair onto half the samples. Here so the torch-free training config can list them.
AUGMENT_RECIPES = ("release", "strong", "copy-paste")
