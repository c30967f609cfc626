"""rembg's HTTP surface: ``POST /api/remove`` takes what ``rembg s`` takes, so its users switch by changing a URL.

rembg's server reads a multipart field ``file`` and form fields ``a`` (alpha matting), ``af``, ``ab``, ``ae``
(its matting thresholds and erosion), ``om`` (only mask), ``ppm`` (post-process mask) and ``model``, and the
query parameters ``bgc`` (background colour ``R,G,B,A``) and ``extras`` (JSON for its model sessions). Here:

- ``a`` -> alpha matting (``refine=matting``), whose trimap csnet makes from the mask itself, so ``af``,
  ``ab`` and ``ae`` are accepted and have no effect;
- ``om`` -> the mask (8-bit PNG) instead of the cutout;
- ``bgc`` -> the cutout composited over that colour (RGBA PNG; opaque where its alpha is 255);
- ``ppm``, ``model`` and ``extras`` are accepted and ignored: one model is served, and its masks need no
  morphological clean-up.

Every option may come as a form field or as a query parameter (a form field wins). rembg's ``GET
/api/remove?url=`` (the server downloads the image) is refused: a service that fetches what a request names
can be made to reach the machines of the network it runs in.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import numpy as np

from csnet.serve.uploads import UploadError

__all__ = ["RembgOptions", "parse_rembg_options", "over_color", "REMBG_FORM_SCHEMA"]

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")

#: The multipart form of ``POST /api/remove`` for the OpenAPI description.
REMBG_FORM_SCHEMA = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "the image (JPEG, PNG, WebP, BMP, TIFF, GIF)"},
        "a": {"type": "boolean", "default": False, "description": "alpha matting (csnet: refine=matting)"},
        "om": {"type": "boolean", "default": False, "description": "only the mask (8-bit PNG)"},
        "af": {"type": "integer", "description": "accepted for rembg clients; no effect"},
        "ab": {"type": "integer", "description": "accepted for rembg clients; no effect"},
        "ae": {"type": "integer", "description": "accepted for rembg clients; no effect"},
        "ppm": {"type": "boolean", "description": "accepted for rembg clients; no effect"},
        "model": {"type": "string", "description": "accepted for rembg clients; the served model is used"},
    },
}


@dataclass(frozen=True)
class RembgOptions:
    """What a rembg request asks for, in csnet's terms."""

    only_mask: bool = False
    matting: bool = False
    background: Optional[tuple[int, int, int, int]] = None


def _flag(name: str, value: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise UploadError(422, f"{name}: expected true or false, got {value[:40]!r}")


def _color(value: str) -> tuple[int, int, int, int]:
    parts = [part.strip() for part in value.split(",")]
    try:
        numbers = [int(part) for part in parts]
    except ValueError:
        numbers = []
    if len(numbers) not in (3, 4) or not all(0 <= n <= 255 for n in numbers):
        raise UploadError(422, f"bgc: expected R,G,B,A (0-255 each, as rembg takes it), got {value[:40]!r}")
    return tuple(numbers + [255] * (4 - len(numbers)))  # type: ignore[return-value]


def parse_rembg_options(fields: Mapping[str, str], query: Mapping[str, str]) -> RembgOptions:
    """rembg's options from the form's text fields and the query string (the form wins).

    Raises:
        UploadError: 422 for a flag that is not a boolean or a colour that is not ``R,G,B[,A]``.
    """
    values = {**query, **fields}
    background = values.get("bgc")
    return RembgOptions(only_mask=_flag("om", values.get("om", "")), matting=_flag("a", values.get("a", "")),
                        background=_color(background) if background else None)


def over_color(rgba: np.ndarray, color: tuple[int, int, int, int]) -> np.ndarray:
    """``H x W x 4`` uint8 RGBA composited over a flat RGBA colour (Porter-Duff *over*, straight alpha)."""
    a = rgba[:, :, 3:4].astype(np.float32) * (1.0 / 255.0)
    b = color[3] / 255.0
    alpha = a + b * (1.0 - a)
    back = np.asarray(color[:3], dtype=np.float32) * (b * (1.0 - a))
    rgb = (rgba[:, :, :3].astype(np.float32) * a + back) / np.maximum(alpha, 1e-6)
    out = np.concatenate([rgb, alpha * 255.0], axis=2)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
