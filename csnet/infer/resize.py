"""Bilinear resizing in NumPy, with PyTorch's formula (``F.interpolate(mode="bilinear", align_corners=False)``,
no antialiasing): the predictor's pre- and postprocessing and the OpenVINO backend's last upsampling use it, so
none of them runs a torch op (or wakes torch's threads) outside the model."""
from __future__ import annotations

import numpy as np

__all__ = ["bilinear_taps", "upsample_bilinear"]


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
