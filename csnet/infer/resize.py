"""Bilinear resizing in NumPy, with PyTorch's formula (``F.interpolate(mode="bilinear", align_corners=False)``,
no antialiasing): the predictor's pre- and postprocessing and the OpenVINO runtime's last upsampling use it (the
CPU rule of :mod:`csnet.infer.runtimes`: no torch op outside the runtime call)."""
from __future__ import annotations

from typing import Iterator

import numpy as np

__all__ = ["bilinear_taps", "resize_image", "resized_row_blocks", "upsample_bilinear"]

#: float64 values per block of output rows in :func:`resized_row_blocks` (16 MB).
ROW_BLOCK_VALUES = 1 << 21


def bilinear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices ``i0, i1`` and weights ``w0, w1`` (float64) of each output index along one axis.

    Source coordinate ``(dst + 0.5) * in / out - 0.5`` clamped at 0; neighbours ``i0`` and ``min(i0 + 1, in - 1)``.
    """
    scale = in_size / out_size
    source = np.maximum(scale * (np.arange(out_size, dtype=np.float64) + 0.5) - 0.5, 0.0)
    i0 = np.minimum(source.astype(np.int64), in_size - 1)
    w1 = np.clip(source - i0, 0.0, 1.0)
    i1 = np.where(i0 < in_size - 1, i0 + 1, i0)
    return i0, i1, 1.0 - w1, w1


def upsample_bilinear(array: np.ndarray, factor: int) -> np.ndarray:
    """``... x H x W`` -> ``... x factor*H x factor*W`` in ``array``'s dtype (as ``F.interpolate(...,
    scale_factor=factor, mode="bilinear")``, within float rounding)."""

    def along(values: np.ndarray, axis: int) -> np.ndarray:
        size = values.shape[axis]
        low, high, _, weight = bilinear_taps(size, size * factor)
        shape = [1] * values.ndim
        shape[axis] = -1
        low_values = np.take(values, low, axis=axis)
        step = weight.astype(values.dtype).reshape(shape)
        return low_values + step * (np.take(values, high, axis=axis) - low_values)

    return along(along(array, array.ndim - 2), array.ndim - 1)


def resize_image(image: np.ndarray, out_h: int, out_w: int, *, divisor: float = 1.0) -> np.ndarray:
    """``H x W x C`` (or ``H x W``) -> float64 ``out_h x out_w x C`` bilinear (PyTorch's formula), values
    divided by ``divisor`` (255 for uint8 images) before interpolating.

    Only the ``2 x out_h`` by ``2 x out_w`` source pixels the taps read are gathered (``np.ix_``), so memory is
    ``O(out_h * out_w * C)`` whatever the image's shape: gathering ``out_h`` full rows first cost 224 x W x C
    (gigabytes for a 1 px tall, 10^6 px wide image). Columns are combined first, then rows, as in torch.
    """
    height, width = image.shape[:2]
    y0, y1, hy0, hy1 = bilinear_taps(height, out_h)
    x0, x1, wx0, wx1 = bilinear_taps(width, out_w)

    def across(rows: np.ndarray) -> np.ndarray:
        a = image[np.ix_(rows, x0)].astype(np.float64)
        b = image[np.ix_(rows, x1)].astype(np.float64)
        if divisor != 1.0:
            a /= divisor
            b /= divisor
        return wx0[None, :, None] * a + wx1[None, :, None] * b

    if image.ndim == 2:
        return resize_image(image[:, :, None], out_h, out_w, divisor=divisor)[:, :, 0]
    return hy0[:, None, None] * across(y0) + hy1[:, None, None] * across(y1)


def resized_row_blocks(values: np.ndarray, height: int, width: int,
                       max_values: int = ROW_BLOCK_VALUES) -> Iterator[tuple[slice, np.ndarray]]:
    """Bilinear resize of a small 2-D float64 map to ``height x width``, yielded as ``(rows, block)``.

    Each block holds about ``max_values`` float64 values (at least one row), computed from only the source rows
    it needs: no ``in_h x width`` intermediate (224 x W, 1.8 GB for a 10^6 px wide image) and no full-size
    float64 map; the caller writes each block into its own output (uint8 masks need one byte per pixel).
    Same arithmetic, in the same order, as resizing columns of the whole map first.
    """
    in_h, in_w = values.shape
    y0, y1, hy0, hy1 = bilinear_taps(in_h, height)
    x0, x1, wx0, wx1 = bilinear_taps(in_w, width)
    step = max(1, max_values // max(width, 1))
    for start in range(0, height, step):
        rows = slice(start, min(height, start + step))
        top = wx0[None, :] * values[np.ix_(y0[rows], x0)] + wx1[None, :] * values[np.ix_(y0[rows], x1)]
        bottom = wx0[None, :] * values[np.ix_(y1[rows], x0)] + wx1[None, :] * values[np.ix_(y1[rows], x1)]
        yield rows, hy0[rows, None] * top + hy1[rows, None] * bottom
