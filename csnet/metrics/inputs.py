"""The one input validator every metric goes through.

A prediction is a saliency map, ``uint8`` H x W in 0..255 or float H x W in [0, 1]; a ground truth is a mask,
``uint8`` H x W binarized at ``> 128`` (SPEC 4) or already ``bool``. The prediction is then min-max stretched to
span [0, 1] (MATLAB's ``mapminmax(im2double(map))``) when it is not constant: the reference implementations
(PySODMetrics, the MATLAB toolboxes) do this, so the published figures include it.
"""
from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np

from csnet.metrics.functional import adaptive_threshold, binary_counts, threshold_counts

__all__ = ["MetricInputError", "SODSample", "prepare_pair", "GT_THRESHOLD"]

GT_THRESHOLD = 128  # ground-truth pixels > 128 are foreground


class MetricInputError(ValueError):
    """A prediction / ground-truth pair the metrics cannot score (shape, dtype or value range)."""


class SODSample:
    """A validated prediction / ground-truth pair, shared by all metrics of one image.

    Attributes:
        pred: float64 (H, W) in [0, 1], min-max stretched.
        gt: bool (H, W).
        n_pos: number of foreground ground-truth pixels.
    """

    def __init__(self, pred: np.ndarray, gt: np.ndarray) -> None:
        self.pred = pred
        self.gt = gt
        self.n_pos = int(np.count_nonzero(gt))

    @property
    def size(self) -> int:
        return self.gt.size

    @cached_property
    def threshold_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """``(tp, pp)``, int64 (256,): pixels at level >= t inside the ground truth / in the whole map.

        Computed once per image and shared by the F-measure and E-measure sweeps.
        """
        return threshold_counts(self.pred, self.gt)

    @cached_property
    def adaptive_counts(self) -> tuple[int, int]:
        """``(tp, pp)`` of the map binarized at the adaptive threshold ``min(2 * mean(pred), 1)``.

        Shared by the adaptive F-measure and E-measure.
        """
        return binary_counts(self.pred, self.gt, adaptive_threshold(self.pred))


def _as_array(x: Any, name: str) -> np.ndarray:
    array = np.asarray(x)
    if array.ndim != 2:
        hint = " (convert colour maps to grayscale first)" if array.ndim == 3 else ""
        raise MetricInputError(f"{name} must be a 2-D H x W map, got shape {array.shape}{hint}")
    if array.size == 0:
        raise MetricInputError(f"{name} is empty (shape {array.shape})")
    return array


def prepare_pair(pred: Any, gt: Any) -> SODSample:
    """Validate and normalize one prediction / ground-truth pair.

    Args:
        pred: saliency map (H, W), ``uint8`` in 0..255 or float (16/32/64 bit) in [0, 1].
        gt: ground truth (H, W), ``uint8`` (foreground where > 128) or ``bool``.

    Returns:
        A :class:`SODSample` with ``pred`` float64 (H, W) stretched to [0, 1] and ``gt`` bool (H, W).

    Raises:
        MetricInputError: wrong number of dimensions, empty, mismatched shapes, unsupported dtype, or a float
            prediction with values outside [0, 1] or not finite.
    """
    pred = _as_array(pred, "pred")
    gt = _as_array(gt, "gt")
    if pred.shape != gt.shape:
        raise MetricInputError(f"pred shape {pred.shape} does not match gt shape {gt.shape}")

    if pred.dtype == np.uint8:
        pred = pred / 255.0
    elif pred.dtype.kind == "f":
        pred = pred.astype(np.float64, copy=False)
        lo, hi = pred.min(), pred.max()
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise MetricInputError("pred holds NaN or infinite values")
        if lo < 0.0 or hi > 1.0:
            raise MetricInputError(f"float pred must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
    else:
        raise MetricInputError(f"pred must be uint8 (0..255) or float in [0, 1], got dtype {pred.dtype}")

    if gt.dtype == np.uint8:
        gt = gt > GT_THRESHOLD
    elif gt.dtype != np.bool_:
        raise MetricInputError(f"gt must be uint8 (foreground > {GT_THRESHOLD}) or bool, got dtype {gt.dtype}")

    lo, hi = pred.min(), pred.max()
    if hi != lo:
        # Same operations, in the same order, as MATLAB's mapminmax: bit-identical maps, so thresholds at
        # exact ties fall the same way as in the reference implementations.
        pred = (pred - lo) / (hi - lo)
    return SODSample(pred, gt)
