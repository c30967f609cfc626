"""Tiny synthetic SOD data: bright discs on noise, written as PNGs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def make_dataset(root: Path, n: int = 8, size: int = 40, seed: int = 0) -> Path:
    """``root/images/*.png`` + ``root/masks/*.png``: a bright disc (the salient object) on dark noise."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
        radius = rng.uniform(size * 0.15, size * 0.3)
        mask = ((yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2)
        image = rng.integers(0, 90, (size, size, 3))
        image[mask] = rng.integers(170, 256, (int(mask.sum()), 3))
        Image.fromarray(image.astype(np.uint8)).save(root / "images" / f"img{i:02d}.png")
        Image.fromarray((mask * 255).astype(np.uint8)).save(root / "masks" / f"img{i:02d}.png")
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("sod") / "TINY")


@pytest.fixture(scope="session")
def tiny_val(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("sod") / "TINYVAL", n=4, seed=1)
