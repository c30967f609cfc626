"""The shared input validator and the metric classes' contracts."""
from __future__ import annotations

import numpy as np
import pytest

from csnet.metrics import (
    MAE,
    SCORE_KEYS,
    EMeasure,
    FMeasure,
    MetricInputError,
    SMeasure,
    SODEvaluator,
    WeightedFMeasure,
    prepare_pair,
)

GT = np.zeros((6, 8), np.uint8)
GT[2:5, 3:7] = 255
PRED = (np.arange(48, dtype=np.uint8).reshape(6, 8) * 5)


@pytest.mark.parametrize("pred, gt, match", [
    (PRED[:5], GT, "does not match"),
    (PRED[..., None], GT[..., None], "2-D"),
    (np.stack([PRED] * 3, -1), GT, "2-D"),
    (np.zeros((0, 8), np.uint8), np.zeros((0, 8), np.uint8), "empty"),
    (PRED.astype(np.int16), GT, "dtype int16"),
    (PRED > 100, GT, "dtype bool"),
    (PRED / 200.0, GT, r"\[0, 1\]"),
    (PRED / 255.0 - 0.5, GT, r"\[0, 1\]"),
    (np.full((6, 8), np.nan), GT, "NaN"),
    (PRED, GT.astype(np.float32), "gt must be"),
    (PRED, GT.astype(np.int64), "gt must be"),
])
def test_validator_rejects(pred, gt, match):
    with pytest.raises(MetricInputError, match=match):
        prepare_pair(pred, gt)


def test_validator_is_a_value_error():
    assert issubclass(MetricInputError, ValueError)


def test_validator_normalizes():
    sample = prepare_pair(PRED, GT)
    assert sample.pred.dtype == np.float64 and sample.gt.dtype == bool
    assert sample.pred.min() == 0.0 and sample.pred.max() == 1.0  # min-max stretched
    assert sample.n_pos == 12
    assert prepare_pair(PRED, GT > 128).n_pos == 12  # bool truth accepted as is
    # binarized at > 128: 128 is background, 129 foreground
    assert prepare_pair(PRED[:1, :2], np.array([[128, 129]], np.uint8)).gt.tolist() == [[False, True]]
    # a constant map is not stretched
    assert np.all(prepare_pair(np.full((3, 3), 0.25, np.float32), GT[:3, :3]).pred == 0.25)


def test_threshold_counts_are_cumulative_from_the_top():
    tp, pp = prepare_pair(PRED, GT).threshold_counts
    assert tp.shape == pp.shape == (256,)
    assert pp[0] == GT.size and tp[0] == 12
    assert np.all(np.diff(pp) <= 0) and np.all(np.diff(tp) <= 0) and np.all(tp <= pp)


def test_evaluator_keys_and_perfect_map():
    ev = SODEvaluator()
    ev.step(GT, GT)
    res = ev.get_results()
    assert tuple(res) == SCORE_KEYS and res["n"] == 1 and len(ev) == 1
    for key in ("maxF", "adpF", "S", "wF"):
        assert res[key] == pytest.approx(1.0, abs=1e-9), key
    for key in ("maxE", "adpE"):  # the reference formula divides by (pixels - 1), not pixels
        assert res[key] == pytest.approx(GT.size / (GT.size - 1), abs=1e-9), key
    assert res["MAE"] == 0.0
    curves = ev.get_curves()
    assert set(curves) == {"threshold", "precision", "recall", "fmeasure", "emeasure"}
    assert all(c.shape == (256,) for c in curves.values())
    assert curves["threshold"][0] == 0.0 and curves["threshold"][-1] == 1.0
    assert curves["recall"][0] == 1.0  # threshold 0 marks every pixel salient


def test_invalid_pair_adds_nothing():
    ev = SODEvaluator()
    ev.step(PRED, GT)
    with pytest.raises(MetricInputError):
        ev.step(PRED[:3], GT)
    assert len(ev) == 1 and all(m.n == 1 for m in ev._metrics)


@pytest.mark.parametrize("cls", [FMeasure, MAE, SMeasure, EMeasure, WeightedFMeasure, SODEvaluator])
def test_results_need_an_image(cls):
    with pytest.raises(ValueError, match="no image"):
        cls().get_results()


def test_single_metric_classes_agree_with_the_evaluator():
    ev = SODEvaluator()
    singles = [FMeasure(), MAE(), SMeasure(), EMeasure(), WeightedFMeasure()]
    rng = np.random.default_rng(3)
    for _ in range(3):
        pred = rng.integers(0, 256, GT.shape).astype(np.uint8)
        ev.step(pred, GT)
        for m in singles:
            m.step(pred, GT)
    merged = {}
    for m in singles:
        merged.update(m.get_results())
    for key in SCORE_KEYS[:-1]:
        assert merged[key] == ev.get_results()[key], key


def test_smeasure_defined_when_centroid_is_on_the_last_row():
    # The reference returns NaN here (an empty block); its weight is 0, so csnet scores it.
    gt = np.zeros((1, 5), np.uint8)
    gt[0, 2:] = 255
    ev = SODEvaluator()
    ev.step(gt, gt)
    assert np.isfinite(ev.get_results()["S"])
