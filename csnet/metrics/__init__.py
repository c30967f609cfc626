"""Salient object detection metrics, scored the way the SOD literature (and PySODMetrics) scores them.

One class per metric with ``step(pred, gt)`` / ``get_results()``; the maths is in
:mod:`csnet.metrics.functional` as pure numpy functions; :class:`SODEvaluator` runs all of them.

>>> from csnet.metrics import SODEvaluator
>>> ev = SODEvaluator()
>>> for pred, gt in pairs:                                   # doctest: +SKIP
...     ev.step(pred, gt)                                    # uint8 H x W maps and masks
>>> ev.get_results()                                         # doctest: +SKIP
{'maxF': ..., 'meanF': ..., 'adpF': ..., 'MAE': ..., 'S': ..., 'maxE': ..., 'meanE': ..., 'adpE': ...,
 'wF': ..., 'n': ...}
"""
from __future__ import annotations

from csnet.metrics.inputs import MetricInputError, SODSample, prepare_pair
from csnet.metrics.sod import (
    MAE,
    SCORE_KEYS,
    EMeasure,
    FMeasure,
    SMeasure,
    SODEvaluator,
    WeightedFMeasure,
)

__all__ = [
    "MAE",
    "SCORE_KEYS",
    "EMeasure",
    "FMeasure",
    "MetricInputError",
    "SMeasure",
    "SODEvaluator",
    "SODSample",
    "WeightedFMeasure",
    "prepare_pair",
]
