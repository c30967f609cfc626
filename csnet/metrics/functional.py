"""The maths of the SOD metrics as pure, vectorized numpy functions on one image.

Every function takes a prepared pair (see :func:`csnet.metrics.inputs.prepare_pair`): ``pred`` float64
(H, W) in [0, 1] and ``gt`` bool (H, W). The formulas follow the papers' MATLAB reference code, including its
small constants (``EPS`` is MATLAB's ``eps``) and its degenerate cases, so that scores agree with the published
toolboxes to floating-point rounding.

Dynamic (threshold-swept) scores use 256 levels: level ``t`` binarizes ``floor(255 * pred) >= t``. One
histogram of the levels inside and outside the ground truth, cumulated from the top, gives the confusion counts
of all 256 thresholds at once.
"""
from __future__ import annotations

import math

import numpy as np

from csnet.metrics._ndimage import filter2d_zero, matlab_gaussian_kernel, nearest_true_runs

__all__ = [
    "EPS",
    "N_LEVELS",
    "threshold_counts",
    "adaptive_threshold",
    "binary_counts",
    "precision_recall",
    "fmeasure",
    "emeasure",
    "mae",
    "smeasure",
    "weighted_fmeasure",
]

EPS = float(np.spacing(1))  # MATLAB's eps, used by the reference formulas to avoid 0 / 0
N_LEVELS = 256

_WF_KERNEL = matlab_gaussian_kernel(7, 5.0)  # fspecial('gaussian', 7, 5) of the wF reference code


def threshold_counts(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Confusion counts of the 256-threshold sweep.

    Args:
        pred: float64 (H, W) in [0, 1].
        gt: bool (H, W).

    Returns:
        ``(tp, pp)``: int64 arrays (256,); ``pp[t]`` pixels with ``floor(255 * pred) >= t`` and ``tp[t]`` those
        of them inside the ground truth.
    """
    levels = (pred * 255).astype(np.uint8)  # truncation, as the reference toolboxes
    pos_hist = np.bincount(levels[gt], minlength=N_LEVELS)
    all_hist = np.bincount(levels.ravel(), minlength=N_LEVELS)
    # counts >= t: cumulative sum from the highest level down
    tp = np.cumsum(pos_hist[::-1])[::-1]
    pp = np.cumsum(all_hist[::-1])[::-1]
    return tp, pp


def adaptive_threshold(pred: np.ndarray) -> float:
    """Adaptive binarization threshold of Achanta et al.: ``min(2 * mean(pred), 1)``."""
    return min(2.0 * float(pred.mean()), 1.0)


def binary_counts(pred: np.ndarray, gt: np.ndarray, threshold: float) -> tuple[int, int]:
    """``(tp, pp)`` of the map binarized at ``pred >= threshold`` (pred float64 (H, W), gt bool (H, W))."""
    positive = pred >= threshold
    return int(np.count_nonzero(positive & gt)), int(np.count_nonzero(positive))


def precision_recall(tp: np.ndarray | int, pp: np.ndarray | int, n_pos: int) -> tuple[np.ndarray, np.ndarray]:
    """Precision ``tp / pp`` and recall ``tp / n_pos``, 0 where a denominator is 0 (its numerator is then 0).

    Args:
        tp, pp: true and predicted positives, scalars or arrays of the same shape (e.g. (256,)).
        n_pos: ground-truth positives.
    """
    tp = np.asarray(tp, dtype=np.float64)
    precision = tp / np.maximum(pp, 1)
    recall = tp / max(n_pos, 1)
    return precision, recall


def fmeasure(precision: np.ndarray, recall: np.ndarray, beta2: float = 0.3) -> np.ndarray:
    """``(1 + beta2) P R / (beta2 P + R)``, defined as 0 where ``P R == 0`` (arrays of any matching shape)."""
    numerator = (1.0 + beta2) * precision * recall
    denominator = np.where(numerator == 0, 1.0, beta2 * precision + recall)
    return numerator / denominator


def emeasure(tp: np.ndarray | int, pp: np.ndarray | int, n_pos: int, size: int) -> np.ndarray:
    """E-measure of binarized maps from their confusion counts (Fan et al., IJCAI 2018).

    For a binary map the enhanced-alignment matrix takes only four values, one per confusion cell, so the
    score is a weighted sum of four constants and needs no per-pixel work.

    Args:
        tp, pp: true and predicted positives, scalars or arrays of the same shape (e.g. (256,)).
        n_pos: ground-truth positives.
        size: pixels in the image.

    Returns:
        float64 array of the shape of ``tp``.
    """
    tp = np.asarray(tp, dtype=np.float64)
    pp = np.asarray(pp, dtype=np.float64)
    if n_pos == 0:  # all-background truth: the score is the fraction of predicted background
        total = size - pp
    elif n_pos == size:  # all-foreground truth: the fraction of predicted foreground
        total = pp
    else:
        pred_mean = pp / size
        gt_mean = n_pos / size
        # de-meaned values of a predicted-foreground / -background pixel and of a true fg / bg pixel
        p_fg, p_bg = 1.0 - pred_mean, -pred_mean
        g_fg, g_bg = 1.0 - gt_mean, -gt_mean
        fn = n_pos - tp
        cells = (  # (pixel count, de-meaned pred value, de-meaned gt value)
            (tp, p_fg, g_fg),
            (pp - tp, p_fg, g_bg),
            (fn, p_bg, g_fg),
            (size - pp - fn, p_bg, g_bg),
        )
        total = np.zeros_like(tp)
        for count, p, g in cells:
            align = 2.0 * p * g / (p * p + g * g + EPS)
            total = total + count * (align + 1.0) ** 2 / 4.0
    return total / (size - 1 + EPS)


def mae(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean absolute error between pred float64 (H, W) in [0, 1] and gt bool (H, W) (Perazzi et al. 2012)."""
    return float(np.mean(np.abs(pred - gt)))


def _object_similarity(values: np.ndarray) -> float:
    """S-measure's object term of one region (1-D values): high mean, low spread."""
    mean = np.mean(values)
    std = np.std(values, ddof=1) if values.size > 1 else 0.0
    return float(2.0 * mean / (mean * mean + 1.0 + std + EPS))


def _ssim(pred: np.ndarray, gt: np.ndarray) -> float:
    """S-measure's region term of one block: the SSIM-like index of the reference code."""
    n = pred.size
    if n == 0:  # the block is empty; its area weight is 0 (the reference code would return NaN here)
        return 0.0
    gt = gt.astype(np.float64)
    x = np.mean(pred)
    y = np.mean(gt)
    dx = pred - x
    dy = gt - y
    sigma_x = np.sum(dx * dx) / (n - 1 + EPS)
    sigma_y = np.sum(dy * dy) / (n - 1 + EPS)
    sigma_xy = np.sum(dx * dy) / (n - 1 + EPS)
    alpha = 4.0 * x * y * sigma_xy
    beta = (x * x + y * y) * (sigma_x + sigma_y)
    if alpha != 0:
        return float(alpha / (beta + EPS))
    return 1.0 if beta == 0 else 0.0


def smeasure(pred: np.ndarray, gt: np.ndarray, alpha: float = 0.5) -> float:
    """Structure measure (Fan et al., ICCV 2017) of pred float64 (H, W) in [0, 1] against gt bool (H, W).

    ``alpha * object + (1 - alpha) * region``: the object term compares foreground and background
    distributions, the region term splits the image into four blocks at the ground-truth centroid.
    """
    size = gt.size
    n_pos = int(np.count_nonzero(gt))
    if n_pos == 0:
        return float(1.0 - np.mean(pred))
    if n_pos == size:
        return float(np.mean(pred))
    fg_ratio = n_pos / size

    obj = fg_ratio * _object_similarity(pred[gt]) + (1.0 - fg_ratio) * _object_similarity(1.0 - pred[~gt])

    h, w = gt.shape
    # Centroid, rounded half to even like numpy (and the reference); the MATLAB code splits after row/column
    # round(centroid) in 1-based indexing, i.e. the top/left blocks end at 0-based index round(c) inclusive.
    cy = int(np.round(np.dot(np.count_nonzero(gt, axis=1), np.arange(h)) / n_pos)) + 1
    cx = int(np.round(np.dot(np.count_nonzero(gt, axis=0), np.arange(w)) / n_pos)) + 1
    area = h * w
    reg = (
        _ssim(pred[:cy, :cx], gt[:cy, :cx]) * (cy * cx / area)
        + _ssim(pred[:cy, cx:], gt[:cy, cx:]) * (cy * (w - cx) / area)
        + _ssim(pred[cy:, :cx], gt[cy:, :cx]) * ((h - cy) * cx / area)
        + _ssim(pred[cy:, cx:], gt[cy:, cx:]) * ((h - cy) * (w - cx) / area)
    )
    return max(0.0, alpha * obj + (1.0 - alpha) * reg)


def weighted_fmeasure(pred: np.ndarray, gt: np.ndarray, beta2: float = 1.0) -> float:
    """Weighted F-measure (Margolin et al., CVPR 2014) of pred float64 (H, W) in [0, 1] against gt bool (H, W).

    Errors are (1) spread to each background pixel from its nearest foreground pixel, (2) smoothed by a 7x7
    Gaussian (sigma 5) and capped by the raw error inside the object, (3) weighted up with the distance from the
    object. Returns 0 for an all-background ground truth.
    """
    n_pos = int(np.count_nonzero(gt))
    if n_pos == 0:
        return 0.0
    error = np.abs(pred - gt)
    background = ~gt
    has_background = n_pos < gt.size
    if has_background:
        h, w = gt.shape
        runs = nearest_true_runs(gt)  # pixels sharing a nearest foreground pixel come in runs along rows
        # Pixel dependency: a background pixel takes the error of its nearest foreground pixel (foreground
        # pixels are their own nearest), so the smoothing below does not bleed across the object edge.
        spread = np.repeat(error.ravel()[runs.index], runs.length).reshape(h, w)
    else:
        spread = error
    smoothed = filter2d_zero(spread, _WF_KERNEL)
    # Inside the object an error counts at most as much as its smoothed version.
    fg_error = np.minimum(smoothed[gt], error[gt])
    fp = 0.0
    if has_background:
        # Pixel importance: outside the object errors weigh 2 - 0.5 ** (d / 5), growing with the distance d.
        dx = np.arange(w) - np.repeat(runs.col, runs.length).reshape(h, w)
        dist2 = np.repeat(runs.dy2, runs.length).reshape(h, w) + dx * dx
        importance = 2.0 - np.exp(math.log(0.5) / 5.0 * np.sqrt(dist2[background]))
        fp = (error[background] * importance).sum()
    tp = n_pos - fg_error.sum()
    recall = 1.0 - fg_error.mean()
    precision = tp / (tp + fp + EPS)
    return float((1.0 + beta2) * recall * precision / (recall + beta2 * precision + EPS))
