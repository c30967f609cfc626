"""One small class per SOD metric: ``step(pred, gt)`` adds an image, ``get_results()`` returns a dict.

Scores are averaged over images; dynamic curves are averaged over images per threshold (index ``t`` of a
curve is the threshold ``floor(255 * pred) >= t``, t = 0..255). The classes keep running sums, so memory does
not grow with the number of images. :class:`SODEvaluator` runs them all, validating each image once.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from csnet.metrics import functional as Fn
from csnet.metrics.inputs import SODSample, prepare_pair

__all__ = ["FMeasure", "MAE", "SMeasure", "EMeasure", "WeightedFMeasure", "SODEvaluator", "SCORE_KEYS"]

# Keys of SODEvaluator.get_results(), in report order.
SCORE_KEYS = ("maxF", "meanF", "adpF", "MAE", "S", "maxE", "meanE", "adpE", "wF", "n")


def _check_not_empty(n: int, name: str) -> None:
    if n == 0:
        raise ValueError(f"{name}: no image was added; call step(pred, gt) first")


class _Metric:
    """Shared ``step``: validate with :func:`prepare_pair`, then ``update`` with the prepared sample."""

    def __init__(self) -> None:
        self.n = 0

    def step(self, pred: Any, gt: Any) -> None:
        """Add one image: ``pred`` uint8 (H, W) or float (H, W) in [0, 1]; ``gt`` uint8 (H, W) or bool (H, W)."""
        self.update(prepare_pair(pred, gt))

    def update(self, sample: SODSample) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class FMeasure(_Metric):
    r"""Max / mean / adaptive F-measure and the precision-recall curve.

    Achanta, Hemami, Estrada, Süsstrunk, "Frequency-tuned salient region detection", CVPR 2009.
    ``F = (1 + beta2) P R / (beta2 P + R)`` with ``beta2 = 0.3``. Max and mean F are the maximum and mean
    over the 256 thresholds of the per-threshold F averaged over images; adaptive F binarizes each map at
    ``min(2 * mean(pred), 1)``.
    """

    def __init__(self, beta2: float = 0.3) -> None:
        super().__init__()
        self.beta2 = beta2
        self._precision = np.zeros(Fn.N_LEVELS)
        self._recall = np.zeros(Fn.N_LEVELS)
        self._fmeasure = np.zeros(Fn.N_LEVELS)
        self._adaptive = 0.0

    def update(self, sample: SODSample) -> None:
        tp, pp = sample.threshold_counts
        precision, recall = Fn.precision_recall(tp, pp, sample.n_pos)
        self._precision += precision
        self._recall += recall
        self._fmeasure += Fn.fmeasure(precision, recall, self.beta2)
        tp1, pp1 = sample.adaptive_counts
        self._adaptive += float(Fn.fmeasure(*Fn.precision_recall(tp1, pp1, sample.n_pos), self.beta2))
        self.n += 1

    def get_results(self) -> dict[str, Any]:
        """``maxF``, ``meanF``, ``adpF`` (floats) and the (256,) curves ``precision``, ``recall``, ``fmeasure``."""
        _check_not_empty(self.n, type(self).__name__)
        curve = self._fmeasure / self.n
        return {
            "maxF": float(curve.max()),
            "meanF": float(curve.mean()),
            "adpF": self._adaptive / self.n,
            "precision": self._precision / self.n,
            "recall": self._recall / self.n,
            "fmeasure": curve,
        }


class MAE(_Metric):
    r"""Mean absolute error between the map in [0, 1] and the binary ground truth.

    Perazzi, Krähenbühl, Pritch, Hornung, "Saliency filters: Contrast based filtering for salient region
    detection", CVPR 2012.
    """

    def __init__(self) -> None:
        super().__init__()
        self._sum = 0.0

    def update(self, sample: SODSample) -> None:
        self._sum += Fn.mae(sample.pred, sample.gt)
        self.n += 1

    def get_results(self) -> dict[str, float]:
        """``MAE``: mean over images."""
        _check_not_empty(self.n, type(self).__name__)
        return {"MAE": self._sum / self.n}


class SMeasure(_Metric):
    r"""Structure measure: object-aware and region-aware structural similarity.

    Fan, Cheng, Liu, Li, Borji, "Structure-measure: A new way to evaluate foreground maps", ICCV 2017.
    """

    def __init__(self, alpha: float = 0.5) -> None:
        super().__init__()
        self.alpha = alpha
        self._sum = 0.0

    def update(self, sample: SODSample) -> None:
        self._sum += Fn.smeasure(sample.pred, sample.gt, self.alpha)
        self.n += 1

    def get_results(self) -> dict[str, float]:
        """``S``: mean over images."""
        _check_not_empty(self.n, type(self).__name__)
        return {"S": self._sum / self.n}


class EMeasure(_Metric):
    r"""Max / mean / adaptive enhanced-alignment measure.

    Fan, Gong, Cao, Ren, Cheng, Borji, "Enhanced-alignment measure for binary foreground map evaluation",
    IJCAI 2018. Same thresholds as :class:`FMeasure`.
    """

    def __init__(self) -> None:
        super().__init__()
        self._curve = np.zeros(Fn.N_LEVELS)
        self._adaptive = 0.0

    def update(self, sample: SODSample) -> None:
        tp, pp = sample.threshold_counts
        self._curve += Fn.emeasure(tp, pp, sample.n_pos, sample.size)
        tp1, pp1 = sample.adaptive_counts
        self._adaptive += float(Fn.emeasure(tp1, pp1, sample.n_pos, sample.size))
        self.n += 1

    def get_results(self) -> dict[str, Any]:
        """``maxE``, ``meanE``, ``adpE`` (floats) and the (256,) curve ``emeasure``."""
        _check_not_empty(self.n, type(self).__name__)
        curve = self._curve / self.n
        return {
            "maxE": float(curve.max()),
            "meanE": float(curve.mean()),
            "adpE": self._adaptive / self.n,
            "emeasure": curve,
        }


class WeightedFMeasure(_Metric):
    r"""Weighted F-measure (beta^2 = 1): errors weighted by pixel dependency and importance.

    Margolin, Zelnik-Manor, Tal, "How to evaluate foreground maps?", CVPR 2014.
    """

    def __init__(self, beta2: float = 1.0) -> None:
        super().__init__()
        self.beta2 = beta2
        self._sum = 0.0

    def update(self, sample: SODSample) -> None:
        self._sum += Fn.weighted_fmeasure(sample.pred, sample.gt, self.beta2)
        self.n += 1

    def get_results(self) -> dict[str, float]:
        """``wF``: mean over images."""
        _check_not_empty(self.n, type(self).__name__)
        return {"wF": self._sum / self.n}


class SODEvaluator:
    """All SOD metrics at once: each image is validated once and its threshold sweep computed once.

    >>> ev = SODEvaluator()
    >>> ev.step(pred_uint8, gt_uint8)                        # doctest: +SKIP
    >>> ev.get_results()["maxF"]                             # doctest: +SKIP
    """

    def __init__(self, beta2: float = 0.3) -> None:
        self.fmeasure = FMeasure(beta2)
        self.mae = MAE()
        self.smeasure = SMeasure()
        self.emeasure = EMeasure()
        self.wfmeasure = WeightedFMeasure()
        self._metrics = (self.fmeasure, self.mae, self.smeasure, self.emeasure, self.wfmeasure)

    def __len__(self) -> int:
        return self.mae.n

    def step(self, pred: Any, gt: Any) -> None:
        """Add one image: ``pred`` uint8 (H, W) or float (H, W) in [0, 1]; ``gt`` uint8 (H, W) or bool (H, W).

        Raises:
            MetricInputError: the pair is invalid (nothing is added then).
        """
        sample = prepare_pair(pred, gt)
        for metric in self._metrics:
            metric.update(sample)

    def get_results(self) -> dict[str, float | int]:
        """Scores averaged over images, keys :data:`SCORE_KEYS` (``n`` is the number of images)."""
        _check_not_empty(len(self), type(self).__name__)
        merged: dict[str, Any] = {}
        for metric in self._metrics:
            merged.update(metric.get_results())
        merged["n"] = len(self)
        return {key: merged[key] for key in SCORE_KEYS}

    def get_curves(self) -> dict[str, np.ndarray]:
        """Curves for plotting, float64 (256,) each, index t = threshold level t.

        Keys: ``threshold`` (t / 255), ``precision``, ``recall``, ``fmeasure``, ``emeasure``.
        """
        f = self.fmeasure.get_results()
        return {
            "threshold": np.arange(Fn.N_LEVELS) / (Fn.N_LEVELS - 1),
            "precision": f["precision"],
            "recall": f["recall"],
            "fmeasure": f["fmeasure"],
            "emeasure": self.emeasure.get_results()["emeasure"],
        }
