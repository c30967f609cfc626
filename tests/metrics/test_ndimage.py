"""The numpy Gaussian filter and Euclidean feature transform behind the weighted F-measure."""
from __future__ import annotations

import numpy as np
import pytest

from csnet.metrics._ndimage import filter2d_zero, matlab_gaussian_kernel, nearest_true


def _brute_force_nearest(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Squared distance and flat index of the nearest True pixel; ties: smallest column, then row."""
    h, w = mask.shape
    fr, fc = np.nonzero(mask)
    rows, cols = np.mgrid[0:h, 0:w]
    d2 = (rows[..., None] - fr) ** 2 + (cols[..., None] - fc) ** 2  # (H, W, n_true)
    # lexicographic (distance, column, row) minimum as one integer key
    key = (d2 * w + fc) * h + fr
    best = np.argmin(key, axis=-1)
    return d2.min(axis=-1), fr[best] * w + fc[best]


def test_feature_transform_matches_brute_force_with_many_ties():
    rng = np.random.default_rng(0)
    for _ in range(300):
        h, w = rng.integers(1, 24, size=2)
        mask = rng.random((h, w)) < rng.uniform(0.01, 0.5)
        if not mask.any():
            mask[rng.integers(h), rng.integers(w)] = True
        dist2, index = nearest_true(mask)
        ref_d2, ref_index = _brute_force_nearest(mask)
        np.testing.assert_array_equal(dist2, ref_d2)
        np.testing.assert_array_equal(index, ref_index)


def test_feature_transform_structured_masks():
    # symmetric shapes make exact ties everywhere
    for mask in (np.eye(9, dtype=bool), np.eye(9, dtype=bool)[::-1], np.ones((4, 6), bool),
                 np.pad(np.ones((3, 3), bool), 5), np.pad(np.ones((1, 1), bool), ((0, 7), (6, 0)))):
        dist2, index = nearest_true(mask)
        ref_d2, ref_index = _brute_force_nearest(mask)
        np.testing.assert_array_equal(dist2, ref_d2)
        np.testing.assert_array_equal(index, ref_index)


@pytest.mark.shared
def test_feature_transform_matches_scipy_on_real_masks():
    ndimage = pytest.importorskip("scipy.ndimage")
    Image = pytest.importorskip("PIL.Image")
    from tests.shared_data import require_shared

    files = sorted((require_shared("data", "PASCAL-S") / "masks").glob("*.png"))[::170]
    for path in files:
        mask = np.asarray(Image.open(path).convert("L")) > 128
        dist, (rows, cols) = ndimage.distance_transform_edt(~mask, return_indices=True)
        dist2, index = nearest_true(mask)
        np.testing.assert_array_equal(index, rows * mask.shape[1] + cols, err_msg=path.name)
        np.testing.assert_allclose(np.sqrt(dist2), dist, rtol=0, atol=1e-12)


def test_feature_transform_rejects_empty_mask():
    with pytest.raises(ValueError):
        nearest_true(np.zeros((3, 3), bool))


def test_gaussian_kernel_is_matlab_fspecial():
    g = matlab_gaussian_kernel(7, 5.0)
    y, x = np.mgrid[-3:4, -3:4]
    k = np.exp(-(x * x + y * y) / 50.0)
    np.testing.assert_allclose(np.outer(g, g), k / k.sum(), rtol=0, atol=1e-16)


def test_filter_is_zero_padded_same_size_convolution():
    rng = np.random.default_rng(1)
    g = matlab_gaussian_kernel(7, 5.0)
    k = np.outer(g, g)
    for shape in ((1, 1), (2, 9), (13, 8), (30, 31)):
        image = rng.random(shape)
        padded = np.pad(image, 3)
        ref = np.zeros(shape)
        for i in range(7):
            for j in range(7):
                ref += k[i, j] * padded[i:i + shape[0], j:j + shape[1]]
        np.testing.assert_allclose(filter2d_zero(image, g), ref, rtol=0, atol=1e-15)
