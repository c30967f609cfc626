"""Turning an image and its saliency mask into something to look at: cutouts, new backgrounds, overlays.

All functions take ``image`` as ``H x W x 3`` uint8 RGB and ``mask`` as ``H x W`` uint8 (0 = background,
255 = salient) and return new uint8 arrays of the same height and width.
"""
from __future__ import annotations

from typing import Sequence, Union

import numpy as np
from PIL import Image, ImageColor

__all__ = ["Color", "parse_color", "cutout", "replace_background", "blur_background", "overlay", "checkerboard",
           "over"]

Color = tuple[int, int, int]


def parse_color(spec: Union[str, Sequence[int]]) -> Color:
    """``"white"``, ``"#00ff00"``, ``"#0f0"``, ``"0,255,0"``, ``"rgb(0,255,0)"`` or ``(0, 255, 0)`` -> RGB.

    Raises:
        ValueError: not a colour (the message names the value).
    """
    if not isinstance(spec, str):
        values = tuple(int(v) for v in spec)
        if len(values) != 3 or not all(0 <= v <= 255 for v in values):
            raise ValueError(f"not an RGB colour: {spec!r}")
        return values  # type: ignore[return-value]
    text = spec.strip()
    if text.count(",") == 2 and not text.lower().startswith(("rgb", "hsl", "hsv")):
        text = f"rgb({text})"
    try:
        rgb = ImageColor.getrgb(text)
    except ValueError:
        raise ValueError(f"not a colour: {spec!r} (use a name like white, #rrggbb or r,g,b)") from None
    return tuple(int(v) for v in rgb[:3])  # type: ignore[return-value]


def _check(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    image, mask = np.asarray(image), np.asarray(mask)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be H x W x 3 uint8, got {image.shape} {image.dtype}")
    if mask.dtype != np.uint8 or mask.shape != image.shape[:2]:
        raise ValueError(f"mask must be H x W uint8 matching the image {image.shape[:2]}, got {mask.shape} {mask.dtype}")
    return image, mask


def cutout(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """RGBA: the image's colours with the mask as alpha (straight, not premultiplied)."""
    image, mask = _check(image, mask)
    return np.concatenate([image, mask[:, :, None]], axis=2)


def _blend(foreground: np.ndarray, background: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``fg * a + bg * (1 - a)`` for uint8 arrays, ``alpha`` uint8 ``H x W``, rounded."""
    a = alpha.astype(np.float32)[:, :, None] * (1.0 / 255.0)
    out = background.astype(np.float32)
    out += (foreground.astype(np.float32) - out) * a
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _fit(background: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scale ``background`` to cover ``height x width`` keeping its aspect ratio, then centre-crop."""
    bh, bw = background.shape[:2]
    scale = max(height / bh, width / bw)
    new_w, new_h = max(width, round(bw * scale)), max(height, round(bh * scale))
    resized = np.asarray(Image.fromarray(background).resize((new_w, new_h), Image.Resampling.BILINEAR))
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return resized[top:top + height, left:left + width]


def replace_background(image: np.ndarray, mask: np.ndarray,
                       background: Union[str, Sequence[int], np.ndarray]) -> np.ndarray:
    """RGB: the salient object over ``background``, a colour or an ``h x w x 3`` uint8 image
    (scaled to cover the frame, centre-cropped)."""
    image, mask = _check(image, mask)
    height, width = mask.shape
    if isinstance(background, np.ndarray) and background.ndim == 3:
        if background.dtype != np.uint8 or background.shape[2] != 3:
            raise ValueError(f"background image must be h x w x 3 uint8, got {background.shape} {background.dtype}")
        back = _fit(background, height, width)
    else:
        back = np.empty_like(image)
        back[:] = parse_color(background)  # type: ignore[arg-type]
    return _blend(image, back, mask)


def blur_background(image: np.ndarray, mask: np.ndarray, radius: float | None = None) -> np.ndarray:
    """RGB: the subject sharp over its own background Gaussian-blurred by ``radius`` pixels (default 2% of the
    longer side), a portrait-mode look.

    The background is blurred with the subject masked out and renormalized (blur of ``image * (1 - a)`` over
    blur of ``1 - a``), so the subject's colours do not smear into a halo around it.
    """
    from PIL import ImageFilter

    image, mask = _check(image, mask)
    height, width = mask.shape
    radius = max(1.0, 0.02 * max(height, width)) if radius is None else float(radius)
    if radius <= 0:
        return image.copy()
    keep = 255 - mask
    weighted = np.rint(image.astype(np.float32) * (keep[:, :, None] / 255.0)).astype(np.uint8)
    blur = ImageFilter.GaussianBlur(radius)
    num = np.asarray(Image.fromarray(weighted).filter(blur), dtype=np.float32)
    den = np.asarray(Image.fromarray(keep).filter(blur), dtype=np.float32)[:, :, None] / 255.0
    plain = np.asarray(Image.fromarray(image).filter(blur), dtype=np.float32)
    back = np.where(den > 0.02, num / np.maximum(den, 1e-6), plain)  # deep inside the subject: plain blur
    return _blend(image, np.clip(np.rint(back), 0, 255).astype(np.uint8), mask)


def overlay(image: np.ndarray, mask: np.ndarray, color: Union[str, Sequence[int]] = (255, 0, 96),
            opacity: float = 0.5) -> np.ndarray:
    """RGB: the image with the salient region tinted by ``color`` at ``opacity`` (for checking masks)."""
    image, mask = _check(image, mask)
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    tint = np.empty_like(image)
    tint[:] = parse_color(color)
    alpha = np.rint(mask.astype(np.float32) * opacity).astype(np.uint8)
    return _blend(tint, image, alpha)


def checkerboard(height: int, width: int, cell: int = 12,
                 colors: tuple[Color, Color] = ((204, 204, 204), (255, 255, 255))) -> np.ndarray:
    """RGB ``height x width`` checkerboard (how image editors show transparency)."""
    ys = (np.arange(height) // cell)[:, None]
    xs = (np.arange(width) // cell)[None, :]
    dark = ((ys + xs) % 2 == 0)
    out = np.empty((height, width, 3), dtype=np.uint8)
    out[:] = colors[1]
    out[dark] = colors[0]
    return out


def over(rgba: np.ndarray, background: np.ndarray) -> np.ndarray:
    """RGB: an ``H x W x 4`` uint8 RGBA image composited over an ``H x W x 3`` background."""
    rgba = np.asarray(rgba)
    if rgba.dtype != np.uint8 or rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ValueError(f"rgba must be H x W x 4 uint8, got {rgba.shape} {rgba.dtype}")
    return _blend(rgba[:, :, :3], background, rgba[:, :, 3])
