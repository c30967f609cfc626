"""Edge refinement of saliency masks, and foreground colours for cutouts (the ``refine`` extra).

A network run at 224 x 224 and scaled back to a photo's size gives soft, blurry edges and an interior that
often stops short of full opacity; cut out with it, an object carries a grey halo of its old background.
Two refinements, measured on held-out PASCAL-S in ``docs/REFINEMENT.md``:

``guided``
    He et al.'s guided filter (ECCV 2010 / TPAMI 2013, "Guided Image Filtering") with the photo's luminance as
    guide, computed on a subsampled grid (He & Sun, "Fast Guided Filter", arXiv 1505.00996) so its cost does
    not grow with megapixels, then a contrast ramp so that confident pixels become exactly 0 or 255. Needs
    only OpenCV's box filter (``opencv-python-headless``); fast enough for video.
``matting``
    A trimap made from the mask (certain foreground, certain background, an unknown band along the edge),
    solved by closed-form alpha matting (Levin et al., CVPR 2006) with ``pymatting``, as rembg does. For
    stills: seconds per photo.

:func:`estimate_foreground` replaces the colours of semi-transparent pixels by the object's own colour
(pymatting's multi-level estimate_foreground_ml, Germer et al. 2020), so a cutout over a new background
shows no trace of the old one.
"""
from __future__ import annotations

import logging
from typing import Optional

import numpy as np

__all__ = ["REFINE_MODES", "RefineError", "missing_modules", "guided_alpha", "matting_alpha", "refine_mask", "estimate_foreground",
           "refined_cutout"]

log = logging.getLogger(__name__)

REFINE_MODES = ("guided", "matting")
_EXTRA = "pip install 'csnet[refine]'"


class RefineError(ImportError):
    """A refinement whose library is missing; the message names the extra to install."""


#: What each mode imports: for masks, and for cutouts (whose edge colours come from pymatting).
_MODULES = {"guided": ("cv2",), "matting": ("pymatting", "scipy")}


def missing_modules(mode: str, *, cutout: bool = True) -> tuple[str, ...]:
    """The modules ``mode`` needs (with ``cutout``, also for foreground colours) that are not installed.

    Lets callers choose or refuse a mode up front, with the extra named, instead of failing halfway.
    """
    import importlib.util

    if mode not in _MODULES:
        raise ValueError(f"unknown refinement {mode!r}; choose from {', '.join(REFINE_MODES)}")
    wanted = _MODULES[mode] + (("pymatting",) if cutout and mode == "guided" else ())
    return tuple(name for name in wanted if importlib.util.find_spec(name) is None)


def _cv2():
    try:
        import cv2
    except ImportError as error:
        raise RefineError(f"--refine guided needs OpenCV: {_EXTRA}") from error
    return cv2


def _pymatting():
    try:
        import pymatting
    except ImportError as error:
        raise RefineError(f"--refine matting and foreground estimation need pymatting: {_EXTRA}") from error
    return pymatting


def _check(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    image, mask = np.asarray(image), np.asarray(mask)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be H x W x 3 uint8, got {image.shape} {image.dtype}")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask must be H x W matching the image {image.shape[:2]}, got {mask.shape}")
    if mask.dtype == np.uint8:
        return image, mask.astype(np.float32) * (1.0 / 255.0)
    return image, np.clip(mask.astype(np.float32), 0.0, 1.0)


def _ramp(alpha: np.ndarray, low: float, high: float) -> np.ndarray:
    """Linear ramp from ``low`` (-> 0) to ``high`` (-> 1): monotone, so the ranking of pixels (and a threshold
    sweep's best F) is kept, while confident pixels become exactly transparent or opaque."""
    return np.clip((alpha - low) * (1.0 / (high - low)), 0.0, 1.0)


def guided_alpha(image: np.ndarray, mask: np.ndarray, *, radius: Optional[int] = None, eps: float = 1e-3,
                 low: float = 0.15, high: float = 0.85, work_side: int = 512) -> np.ndarray:
    """The mask snapped to the photo's edges by a fast guided filter: float32 ``H x W`` alpha in [0, 1].

    Args:
        image: ``H x W x 3`` uint8 RGB, the guide.
        mask: ``H x W`` uint8 (0-255) or float (0-1) saliency map.
        radius: box radius at full resolution (default 2% of the longer side, at least 2): about the width of
            the blur a 224-pixel network leaves at the photo's size.
        eps: regularization; smaller follows the guide's edges more closely.
        low, high: the contrast ramp applied after filtering (see :func:`_ramp`).
        work_side: the filter's coefficients are computed with the longer side at most this long and
            upsampled (the fast guided filter), so cost is bounded on large photos.
    """
    cv2 = _cv2()
    image, p = _check(image, mask)
    height, width = p.shape
    guide = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) * (1.0 / 255.0)
    radius = max(2, round(0.02 * max(height, width))) if radius is None else int(radius)
    scale = min(1.0, work_side / max(height, width))
    small_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if scale < 1.0:
        g = cv2.resize(guide, small_size, interpolation=cv2.INTER_AREA)
        q = cv2.resize(p, small_size, interpolation=cv2.INTER_AREA)
    else:
        g, q = guide, p
    r = max(1, round(radius * scale))
    box = (2 * r + 1, 2 * r + 1)

    def mean(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, cv2.CV_32F, box, borderType=cv2.BORDER_REFLECT)

    mean_g, mean_q = mean(g), mean(q)
    cov = mean(g * q) - mean_g * mean_q
    var = mean(g * g) - mean_g * mean_g
    a = cov / (var + eps)
    b = mean_q - a * mean_g
    mean_a, mean_b = mean(a), mean(b)
    if scale < 1.0:
        mean_a = cv2.resize(mean_a, (width, height), interpolation=cv2.INTER_LINEAR)
        mean_b = cv2.resize(mean_b, (width, height), interpolation=cv2.INTER_LINEAR)
    return _ramp(mean_a * guide + mean_b, low, high).astype(np.float32)


def make_trimap(mask: np.ndarray, band: Optional[int] = None) -> np.ndarray:
    """Trimap of a ``H x W`` float mask: 1 where the mask is >= 0.5 more than ``band`` pixels from its edge,
    0 where it is < 0.5 as far from it, 0.5 (unknown) in between. Thresholding at 0.5 rather than at rembg's
    240/10 keeps a trimap for soft masks that never reach 240 inside the object."""
    from scipy import ndimage

    height, width = mask.shape
    band = max(2, round(0.02 * max(height, width))) if band is None else int(band)
    fg = mask >= 0.5
    structure = np.ones((3, 3), dtype=bool)
    sure_fg = ndimage.binary_erosion(fg, structure, iterations=band, border_value=1)
    sure_bg = ndimage.binary_erosion(~fg, structure, iterations=band, border_value=1)
    trimap = np.full(mask.shape, 0.5, dtype=np.float64)
    trimap[sure_fg] = 1.0
    trimap[sure_bg] = 0.0
    return trimap


def matting_alpha(image: np.ndarray, mask: np.ndarray, *, band: Optional[int] = None,
                  work_side: int = 640) -> np.ndarray:
    """Closed-form alpha matting on a trimap made from the mask: float32 ``H x W`` alpha in [0, 1].

    The matting problem is solved with the longer side at most ``work_side`` (its cost grows faster than the
    pixel count) and the alpha scaled back; a mask with no certain foreground or background (nothing to
    propagate from) falls back to :func:`guided_alpha` when OpenCV is there, else to the mask itself.
    """
    pymatting = _pymatting()
    image, p = _check(image, mask)
    height, width = p.shape
    scale = min(1.0, work_side / max(height, width))
    from PIL import Image

    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
        small_p = np.asarray(Image.fromarray(p, mode="F").resize(size, Image.Resampling.BILINEAR))
    else:
        small, small_p = image, p
    trimap = make_trimap(small_p, None if band is None else max(1, round(band * scale)))
    if not (trimap == 1.0).any() or not (trimap == 0.0).any():
        log.debug("matting: no certain foreground or background in the trimap; using the guided filter")
        try:
            return guided_alpha(image, mask)
        except RefineError:
            return p
    alpha = pymatting.estimate_alpha_cf(small.astype(np.float64) / 255.0, trimap)
    alpha = np.clip(alpha, 0.0, 1.0).astype(np.float32)
    if scale < 1.0:
        alpha = np.asarray(Image.fromarray(alpha, mode="F").resize((width, height), Image.Resampling.BILINEAR))
    return np.clip(alpha, 0.0, 1.0).astype(np.float32)


def refine_mask(image: np.ndarray, mask: np.ndarray, mode: Optional[str]) -> np.ndarray:
    """``mask`` (``H x W`` uint8) refined by ``mode`` (``None``, ``"guided"`` or ``"matting"``), as uint8."""
    if mode is None or mode == "none":
        return np.asarray(mask)
    if mode == "guided":
        alpha = guided_alpha(image, mask)
    elif mode == "matting":
        alpha = matting_alpha(image, mask)
    else:
        raise ValueError(f"unknown refinement {mode!r}; choose from {', '.join(REFINE_MODES)}")
    return np.clip(np.rint(alpha * 255.0), 0, 255).astype(np.uint8)


def estimate_foreground(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The object's own colours (``H x W x 3`` uint8) where ``alpha`` (``H x W`` uint8) is partial: pymatting's
    estimate_foreground_ml, so the old background does not show through at the edges of a cutout."""
    pymatting = _pymatting()
    image = np.asarray(image)
    a = np.asarray(alpha, dtype=np.float64) / 255.0
    partial = (a > 0.0) & (a < 1.0)
    if not partial.any():
        return image
    fg = pymatting.estimate_foreground_ml(image.astype(np.float64) / 255.0, a)
    out = image.copy()
    out[partial] = np.clip(np.rint(fg[partial] * 255.0), 0, 255).astype(np.uint8)
    return out


def refined_cutout(image: np.ndarray, mask: np.ndarray, mode: Optional[str] = "guided", *,
                   foreground: bool = True) -> np.ndarray:
    """RGBA ``H x W x 4`` uint8: alpha refined by ``mode``, colours of its partial pixels from
    :func:`estimate_foreground` (when ``foreground``)."""
    alpha = refine_mask(image, mask, mode)
    rgb = estimate_foreground(image, alpha) if foreground else np.asarray(image)
    return np.concatenate([rgb, alpha[:, :, None]], axis=2)
