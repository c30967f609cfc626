"""``csnet.remove(x)``: rembg's one-call surface, so code written for ``rembg.remove`` switches by an import.

The result is the same kind as the input: encoded bytes give PNG bytes, a PIL image gives a PIL image, an
``H x W x 3|4`` uint8 array gives an ``H x W x 4`` (or ``x 3``, with a background) uint8 array.
"""
from __future__ import annotations

import functools
import io
import logging
import os
import threading
from typing import Optional, Sequence, Union

import numpy as np
from PIL import Image

from csnet.infer import compose

__all__ = ["remove"]

log = logging.getLogger(__name__)

_lock = threading.Lock()


def _resolve_refine(refine: Optional[str], cutout: bool) -> Optional[str]:
    """``"auto"`` -> ``"guided"`` when the ``refine`` extra is installed, else ``None`` (said once, as a warning):
    ``csnet.remove`` must work on a plain install, as ``rembg.remove`` does. A mode asked for by name whose
    library is missing is an error naming the extra, raised before any work is done."""
    from csnet.infer.refine import RefineError, missing_modules

    if refine is None or refine == "none":
        return None
    if refine == "auto":
        if not missing_modules("guided", cutout=cutout):
            return "guided"
        _warn_unrefined()
        return None
    if refine not in ("guided", "matting"):
        raise ValueError(f"refine must be 'auto', 'guided', 'matting' or None, got {refine!r}")
    missing = missing_modules(refine, cutout=cutout)
    if missing:
        raise RefineError(f"refine={refine!r} needs {', '.join(missing)}: pip install 'csnet[refine]'")
    return refine


@functools.lru_cache(maxsize=1)
def _warn_unrefined() -> None:
    log.warning("csnet.remove: edges are not refined because the refine extra is missing "
                "(pip install 'csnet[refine]'); cutouts may keep a halo and not reach full opacity")


@functools.lru_cache(maxsize=4)
def _default_predictor(model: Optional[str]):
    """One predictor per model name for the process: loading a model costs far more than a call."""
    from csnet.infer.predictor import Predictor

    return Predictor(model)


def remove(x: Union[bytes, Image.Image, np.ndarray], *, predictor=None, model: Optional[str] = None,
           only_mask: bool = False, background: Union[None, str, Sequence[int], np.ndarray, Image.Image] = None,
           blur: Union[bool, float, None] = None, refine: Optional[str] = "auto",
           threshold: Optional[float] = None):
    """Remove (or replace, or blur) the background of one image.

    Args:
        x: encoded image bytes, a PIL image, or an ``H x W x 3|4`` uint8 array.
        predictor: a :class:`~csnet.infer.predictor.Predictor` to use (default: one of ``model``, kept).
        model: model name or file for the default predictor (``None``: the bundled model).
        only_mask: return the mask (``L`` image / ``H x W`` array) instead of a cutout.
        background: a colour (``"#00ff00"``, ``(0, 255, 0)``, ``"transparent"``) or an image to put behind the
            object; the result is then RGB.
        blur: ``True`` or a radius in pixels: the object sharp over its own background blurred.
        refine: ``"auto"`` (default): ``"guided"`` (cheap; alpha reaches 255 inside objects) when the ``refine``
            extra is installed, else no refinement, with a warning once; ``"guided"``, ``"matting"`` or ``None``.
        threshold: binarize the mask at this probability before refining.

    Raises:
        csnet.infer.refine.RefineError: ``refine`` names a mode whose library is not installed.
    """
    if isinstance(x, (bytes, bytearray, memoryview)):
        kind = "bytes"
    elif isinstance(x, Image.Image):
        kind = "pil"
    elif isinstance(x, np.ndarray):
        if x.dtype != np.uint8:
            raise ValueError(f"csnet.remove takes uint8 arrays, got {x.dtype}")
        kind = "array"
    else:
        raise TypeError(f"csnet.remove takes bytes, a PIL image or a numpy array, not {type(x).__name__}")
    if isinstance(background, str) and background.strip().lower() in ("transparent", "none"):
        background = None
    if background is not None and blur:
        raise ValueError("give either background or blur, not both")
    refine = _resolve_refine(refine, cutout=not (only_mask or blur or background is not None))
    if predictor is None:
        with _lock:
            predictor = _default_predictor(None if model is None else os.fspath(model))
    image = predictor.load(bytes(x) if kind == "bytes" else x)
    mask = np.asarray(predictor.predict(image, threshold=threshold, refine=refine))
    if only_mask:
        out = mask
    elif blur:
        out = compose.blur_background(image, mask, None if blur is True else float(blur))
    elif background is not None:
        if isinstance(background, Image.Image):
            background = np.asarray(background.convert("RGB"))
        out = compose.replace_background(image, mask, background)
    elif refine is not None:
        from csnet.infer.refine import estimate_foreground

        out = compose.cutout(estimate_foreground(image, mask), mask)
    else:
        out = compose.cutout(image, mask)
    if kind == "array":
        return out
    pil = Image.fromarray(out)
    if kind == "pil":
        return pil
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    return buffer.getvalue()
