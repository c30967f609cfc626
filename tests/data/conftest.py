"""Small synthetic datasets written with Pillow into tmp_path."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_pair(root: Path, stem: str, *, image_dir: str = "images", mask_dir: str = "GT",
               size: tuple[int, int] = (40, 30), mask_size: tuple[int, int] | None = None,
               mask: np.ndarray | None = None, image_ext: str = ".png",
               mask_ext: str = ".png") -> tuple[Path, Path]:
    """Write ``<root>/<image_dir>/<stem><image_ext>`` and its mask; ``size`` is ``(W, H)``.

    The image is seeded noise; the default mask is a binary rectangle.
    """
    width, height = size
    seed = sum(stem.encode())
    image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    if mask is None:
        mw, mh = mask_size or size
        mask = np.zeros((mh, mw), np.uint8)
        mask[mh // 4: 3 * mh // 4, mw // 3: 2 * mw // 3] = 255
    image_path = root / image_dir / f"{stem}{image_ext}"
    mask_path = root / mask_dir / f"{stem}{mask_ext}"
    image_path.parent.mkdir(parents=True, exist_ok=True)
    mask_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(image_path)
    Image.fromarray(mask).save(mask_path)
    return image_path, mask_path


def make_dataset(root: Path, n: int = 4, **kwargs) -> Path:
    """``n`` pairs named ``s0 .. s{n-1}`` under ``root`` (``images/`` + ``GT/`` by default)."""
    for i in range(n):
        write_pair(root, f"s{i}", **kwargs)
    return root


@pytest.fixture
def small_dataset(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "toy", 6)
