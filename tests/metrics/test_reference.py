"""csnet.metrics against PySODMetrics (the reference implementation) on real PASCAL-S masks.

Predictions are realistic soft maps built deterministically from the masks (blurred, noisy, shifted, another
image's mask), the released CSNet-L-x2 maps of eight images, constant maps and odd crops. Every score of every
image, the curves and the dataset averages must agree to 1e-6.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from csnet.metrics import SCORE_KEYS, SODEvaluator
from tests.shared_data import require_shared

py_sod_metrics = pytest.importorskip("py_sod_metrics")
Image = pytest.importorskip("PIL.Image")

pytestmark = pytest.mark.shared

TOL = 1e-6
N_MASKS = 16


def _box_blur(x: np.ndarray, radius: int) -> np.ndarray:
    """Separable box blur with edge padding (float64 in, float64 out)."""
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius + 1, radius)
        c = np.cumsum(np.pad(x, pad, mode="edge"), axis=axis)
        hi = np.take(c, np.arange(2 * radius + 1, c.shape[axis]), axis=axis)
        lo = np.take(c, np.arange(0, c.shape[axis] - 2 * radius - 1), axis=axis)
        x = (hi - lo) / (2 * radius + 1)
    return x


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def _resize_nearest(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    rows = np.arange(shape[0]) * mask.shape[0] // shape[0]
    cols = np.arange(shape[1]) * mask.shape[1] // shape[1]
    return mask[rows][:, cols]


@pytest.fixture(scope="module")
def cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(label, pred, gt) triples; pred uint8 or float in [0, 1], gt uint8, all from real data."""
    root = require_shared("data", "PASCAL-S")
    files = sorted((root / "masks").glob("*.png"))
    picked = files[:: max(1, len(files) // N_MASKS)][:N_MASKS]
    masks = [(p.stem, np.asarray(Image.open(p).convert("L"))) for p in picked]
    rng = np.random.default_rng(20200305)
    out = []
    for i, (stem, gt) in enumerate(masks):
        g = gt.astype(np.float64)
        kind = i % 4
        if kind == 0:  # a good map: blurred truth with sensor-like noise
            pred = _to_u8(0.85 * _box_blur(g, 4) + rng.normal(10, 12, g.shape))
        elif kind == 1:  # a poor map: shifted, heavily blurred truth plus a spurious blob
            shifted = np.roll(g, (gt.shape[0] // 9, -gt.shape[1] // 7), axis=(0, 1))
            blob = np.zeros_like(g)
            blob[: gt.shape[0] // 4, : gt.shape[1] // 5] = 160
            pred = _to_u8(0.7 * _box_blur(shifted, 9) + _box_blur(blob, 6) + rng.normal(0, 6, g.shape))
        elif kind == 2:  # another image's object
            other = masks[(i + 5) % len(masks)][1].astype(np.float64)
            pred = _to_u8(_box_blur(_resize_nearest(other, gt.shape), 5))
        else:  # a float map in [0, 1] spanning exactly 0..1 (so min-max stretching is the identity)
            pred = _box_blur(g, 3) / 255.0 * 0.9 + rng.uniform(0, 0.1, g.shape)
            pred = (pred - pred.min()) / (pred.max() - pred.min())
        out.append((f"{stem}/{['good', 'poor', 'other', 'float'][kind]}", pred, gt))

    # The released CSNet-L-x2 on eight images, through the test protocol: the maps a user evaluates.
    from csnet.infer.protocol import postprocess

    ref = np.load(require_shared("reference", "official_io.npz"))
    for name, logits in zip(ref["names"][:8], ref["logits_L_x2"][:8]):
        gt = np.asarray(Image.open(root / "masks" / f"{name.rsplit('.', 1)[0]}.png").convert("L"))
        out.append((f"{name}/released", postprocess(logits, gt.shape), gt))

    gt = masks[0][1]
    noisy = _to_u8(rng.normal(100, 50, gt.shape))
    out += [
        ("empty-pred", np.zeros_like(gt), gt),
        ("full-pred", np.full_like(gt, 255), gt),
        ("constant-pred", np.full_like(gt, 128), gt),
        ("empty-gt", noisy, np.zeros_like(gt)),
        ("full-gt", noisy, np.full_like(gt, 255)),
        ("binary-pred", (gt > 128).astype(np.uint8) * 255, gt),
    ]
    # Odd sizes: crops around the object's edge (chosen so the reference's S-measure is defined).
    for (h, w) in ((37, 53), (5, 7), (2, 3), (101, 1 + 2 * 31)):
        ys, xs = np.nonzero(masks[1][1] > 128)
        y0 = max(0, min(int(ys.mean()) - h // 2, masks[1][1].shape[0] - h))
        x0 = max(0, min(int(xs.min()) - w // 3, masks[1][1].shape[1] - w))
        crop_gt = masks[1][1][y0:y0 + h, x0:x0 + w]
        crop_pred = out[1][1][y0:y0 + h, x0:x0 + w]
        out.append((f"crop{h}x{w}", crop_pred, crop_gt))
    return out


def _reference(pairs) -> dict:
    """Dataset scores and curves from PySODMetrics (curves flipped to ascending thresholds)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Fmeasure's deprecation notice
        fm, mae, sm = py_sod_metrics.Fmeasure(), py_sod_metrics.MAE(), py_sod_metrics.Smeasure()
        em, wfm = py_sod_metrics.Emeasure(), py_sod_metrics.WeightedFmeasure()
        for pred, gt in pairs:
            if pred.dtype == np.uint8:
                for m in (fm, mae, sm, em, wfm):
                    m.step(pred, gt)
            else:  # already in [0, 1] and spanning it: the reference's normalize=False path
                for m in (fm, mae, sm, em, wfm):
                    m.step(pred, gt > 128, normalize=False)
        f, e = fm.get_results(), em.get_results()
    curve_f, curve_e = f["fm"]["curve"][::-1], e["em"]["curve"][::-1]
    return {
        "maxF": curve_f.max(), "meanF": curve_f.mean(), "adpF": f["fm"]["adp"],
        "MAE": mae.get_results()["mae"], "S": sm.get_results()["sm"],
        "maxE": curve_e.max(), "meanE": curve_e.mean(), "adpE": e["em"]["adp"],
        "wF": wfm.get_results()["wfm"],
        "precision": f["pr"]["p"][::-1], "recall": f["pr"]["r"][::-1], "fmeasure": curve_f, "emeasure": curve_e,
    }


def _ours(pairs) -> dict:
    ev = SODEvaluator()
    for pred, gt in pairs:
        ev.step(pred, gt)
    return {**ev.get_results(), **ev.get_curves()}


def _assert_close(ours: dict, ref: dict, label: str) -> None:
    for key in [k for k in SCORE_KEYS if k != "n"] + ["precision", "recall", "fmeasure", "emeasure"]:
        assert np.all(np.isfinite(ref[key])), f"{label}: reference {key} not finite (bad test case)"
        err = np.max(np.abs(np.asarray(ours[key]) - np.asarray(ref[key])))
        assert err <= TOL, f"{label}: {key} differs from PySODMetrics by {err:.3g}"


@pytest.fixture(scope="module")
def per_image(cases) -> list[tuple[str, dict, dict]]:
    return [(label, _ours([(pred, gt)]), _reference([(pred, gt)])) for label, pred, gt in cases]


def test_every_image_matches_pysodmetrics(per_image):
    for label, ours, ref in per_image:
        _assert_close(ours, ref, label)


def test_dataset_average_matches_pysodmetrics(cases, per_image):
    # PySODMetrics averages scores and curves over images, then takes max / mean of the averaged curves.
    refs = [ref for _, _, ref in per_image]
    ref = {k: np.mean([r[k] for r in refs], axis=0)
           for k in ("adpF", "MAE", "S", "adpE", "wF", "precision", "recall", "fmeasure", "emeasure")}
    ref.update(maxF=ref["fmeasure"].max(), meanF=ref["fmeasure"].mean(),
               maxE=ref["emeasure"].max(), meanE=ref["emeasure"].mean())
    ours = _ours([(pred, gt) for _, pred, gt in cases])
    assert ours["n"] == len(cases)
    _assert_close(ours, ref, "dataset")


def test_reference_aggregation_is_the_mean_over_images(cases):
    # Guards the derivation above with PySODMetrics' own accumulators on a few images.
    pairs = [(pred, gt) for _, pred, gt in cases[:3]]
    _assert_close(_ours(pairs), _reference(pairs), "3 images")


def test_float_and_uint8_maps_score_the_same(cases):
    for label, pred, gt in cases[:6]:
        if pred.dtype != np.uint8:
            continue
        a, b = _ours([(pred, gt)]), _ours([(pred / 255.0, gt)])
        for key in SCORE_KEYS:
            assert abs(a[key] - b[key]) <= 1e-12, (label, key)
