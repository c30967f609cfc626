"""The demo: a contact sheet of sample photos, their masks and their cutouts.

The photos are the ones scikit-image ships inside its wheel (``skimage/data/``; the ``demo`` extra):
they are read straight from the installed package, so nothing is downloaded.
"""
from __future__ import annotations

import time
from importlib import resources
from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from csnet.infer import compose
from csnet.io.images import load_image

__all__ = ["SAMPLES", "sample_images", "contact_sheet"]

#: name -> file inside ``skimage/data`` (all bundled in scikit-image's wheel, colour photos).
SAMPLES: dict[str, str] = {
    "astronaut": "astronaut.png",
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
    "rocket": "rocket.jpg",
    "motorcycle": "motorcycle_left.png",
}
DEFAULT_SAMPLES = ("astronaut", "chelsea", "coffee", "rocket")


def sample_images(names: Sequence[str] = DEFAULT_SAMPLES) -> list[tuple[str, np.ndarray]]:
    """``(name, H x W x 3 uint8)`` for each sample, read from the installed scikit-image.

    Raises:
        ImportError: scikit-image is not installed (the ``demo`` extra).
        KeyError: an unknown sample name.
        FileNotFoundError: this scikit-image build lacks the file (it is never downloaded).
    """
    try:
        data_dir = resources.files("skimage").joinpath("data")
    except ModuleNotFoundError as error:
        raise ImportError("the demo's sample photos come with scikit-image: pip install 'csnet[demo]'") from error
    out = []
    for name in names:
        if name not in SAMPLES:
            raise KeyError(f"unknown sample {name!r}; choose from {', '.join(SAMPLES)}")
        path = data_dir.joinpath(SAMPLES[name])
        if not path.is_file():
            raise FileNotFoundError(f"scikit-image has no bundled {SAMPLES[name]} (it is not downloaded)")
        out.append((name, load_image(path.read_bytes())))
    return out


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _thumb(array: np.ndarray, height: int) -> Image.Image:
    image = Image.fromarray(array)
    width = max(1, round(image.width * height / image.height))
    return image.resize((width, height), Image.Resampling.LANCZOS)


def contact_sheet(predictor, samples: Sequence[tuple[str, np.ndarray]], *, row_height: int = 220,
                  caption: Optional[str] = None) -> np.ndarray:
    """An RGB sheet with one row per sample: image | mask | cutout on a checkerboard.

    Args:
        predictor: a :class:`~csnet.infer.predictor.Predictor`.
        samples: ``(name, H x W x 3 uint8)`` pairs.
        row_height: height of each thumbnail.
        caption: a line under the title (default: the model, backend and speed).

    Returns:
        ``H x W x 3`` uint8.
    """
    if not samples:
        raise ValueError("the contact sheet needs at least one image")
    start = time.perf_counter()
    images = [array for _, array in samples]
    masks = predictor.predict(images)
    per_image_ms = 1000 * (time.perf_counter() - start) / len(images)
    rows = []
    for image, mask in zip(images, masks):
        rgba = compose.cutout(image, mask)
        board = compose.checkerboard(*image.shape[:2], cell=max(8, image.shape[0] // 24))
        rows.append([_thumb(image, row_height), _thumb(mask, row_height).convert("RGB"),
                     _thumb(compose.over(rgba, board), row_height)])
    gap, margin, title_h, label_w = 8, 16, 58, 110
    col_w = [max(row[c].width for row in rows) for c in range(3)]
    width = margin * 2 + label_w + sum(col_w) + gap * 2
    height = margin * 2 + title_h + len(rows) * row_height + (len(rows) - 1) * gap
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    info = predictor.describe()
    if caption is None:
        caption = f"model {info['name']} · {info['backend']} on {info['device']} · {per_image_ms:.0f} ms/image"
    draw.text((margin, margin), "csnet demo: image | mask | cutout", fill=(20, 20, 20), font=_font(20))
    draw.text((margin, margin + 26), caption, fill=(90, 90, 90), font=_font(14))
    y = margin + title_h
    for (name, _), row in zip(samples, rows):
        draw.text((margin, y + row_height // 2 - 8), name, fill=(40, 40, 40), font=_font(16))
        x = margin + label_w
        for c, thumb in enumerate(row):
            sheet.paste(thumb, (x + (col_w[c] - thumb.width) // 2, y))
            x += col_w[c] + gap
        y += row_height + gap
    return np.asarray(sheet)
