"""The two image operators the weighted F-measure needs, in plain numpy (scipy is not a dependency).

- :func:`matlab_gaussian_kernel` + :func:`filter2d_zero`: MATLAB's ``imfilter(X, fspecial('gaussian', n,
  sigma))``, i.e. a correlation with zero padding and an output the size of the input.
- :func:`nearest_true`: MATLAB's ``[D, IDX] = bwdist(BW)``: for every pixel, the Euclidean distance to the
  nearest ``True`` pixel and that pixel's coordinates.

The weighted F-measure copies, for each background pixel, the error found at its nearest foreground pixel, so
*which* nearest pixel is chosen among equidistant ones changes the score. The reference implementations
(PySODMetrics through ``scipy.ndimage.distance_transform_edt``) pick, among all nearest pixels, the one with the
smallest column and then the smallest row; :func:`nearest_true` reproduces that rule exactly.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["matlab_gaussian_kernel", "filter2d_zero", "nearest_true", "nearest_true_runs", "NearestRuns"]


def matlab_gaussian_kernel(size: int = 7, sigma: float = 5.0) -> np.ndarray:
    """1-D factor ``g`` of MATLAB's ``fspecial('gaussian', size, sigma)``; the 2-D kernel is ``outer(g, g)``.

    ``fspecial`` normalizes the 2-D kernel to sum 1 after zeroing entries below ``eps * max``. A 2-D Gaussian is
    the outer product of two 1-D ones and, for the sizes used here (``size <= 6 * sigma``), no entry is below
    that cut, so normalizing the 1-D factor to sum 1 gives the same kernel and allows a separable filter.

    Returns:
        float64 array of shape ``(size,)`` summing to 1.
    """
    half = (size - 1) / 2.0
    x = np.arange(size, dtype=np.float64) - half
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    if (g.min() / g.max()) ** 2 < np.finfo(np.float64).eps:  # fspecial would zero corners: not separable
        raise ValueError(f"kernel size {size} is too large for sigma {sigma}")
    return g / g.sum()


def filter2d_zero(image: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Filter ``image`` (H x W) with the separable kernel ``outer(g, g)``, zero padding, same-size output.

    ``g`` must be symmetric (odd length), so correlation and convolution coincide and taps at equal distances
    can be summed before multiplying: each 1-D pass is a few whole-array operations, no loop over pixels.

    Returns:
        float64 array of shape (H, W).
    """
    k = g.shape[0]
    if k % 2 == 0 or not np.array_equal(g, g[::-1]):
        raise ValueError("filter2d_zero needs a symmetric kernel of odd length")
    r = k // 2
    out = np.asarray(image, dtype=np.float64)
    for axis in (0, 1):
        n = out.shape[axis]
        pad = [(0, 0), (0, 0)]
        pad[axis] = (r, r)
        padded = np.pad(out, pad)

        def shifted(offset: int, padded: np.ndarray = padded, axis: int = axis, n: int = n) -> np.ndarray:
            return padded[offset:offset + n] if axis == 0 else padded[:, offset:offset + n]

        out = g[r] * shifted(r)
        pair = np.empty_like(out)
        for i in range(r):
            np.add(shifted(i), shifted(k - 1 - i), out=pair)
            pair *= g[i]
            out += pair
    return out


class NearestRuns(NamedTuple):
    """Run-length form of a feature transform: along each row, runs of pixels sharing one nearest pixel.

    Rows are concatenated top to bottom; each row's runs cover its W pixels left to right. Per run:
    ``index`` (int64) flat index ``row * W + col`` of the nearest ``True`` pixel, ``col`` (int64) its
    column, ``dy2`` (float64) its squared row offset from the run's row, ``length`` (int64) the run's pixels.
    A pixel at column x of a run is at squared distance ``dy2 + (x - col)^2``.
    """

    index: np.ndarray
    col: np.ndarray
    dy2: np.ndarray
    length: np.ndarray


def nearest_true(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact Euclidean feature transform of a boolean mask (H x W) that has at least one ``True`` pixel.

    Ties: among equidistant nearest pixels, the smallest column wins, then the smallest row (the rule of
    ``scipy.ndimage.distance_transform_edt(~mask, return_indices=True)``).

    Returns:
        ``(dist2, index)``: int64 arrays of shape (H, W): the squared distance to the chosen nearest ``True``
        pixel and its flat index ``row * W + col`` (a ``True`` pixel is its own nearest, at distance 0).
    """
    h, w = mask.shape
    runs = nearest_true_runs(mask)
    index = np.repeat(runs.index, runs.length).reshape(h, w)
    dx = np.arange(w)[None, :] - np.repeat(runs.col, runs.length).reshape(h, w)
    dist2 = np.repeat(runs.dy2.astype(np.int64), runs.length).reshape(h, w) + dx * dx
    return dist2, index


def nearest_true_runs(mask: np.ndarray) -> NearestRuns:
    """:func:`nearest_true` in run-length form (see :class:`NearestRuns`): cheaper when the caller only
    needs per-run values, such as a quantity read at the nearest pixel.

    Two separable passes (Felzenszwalb & Huttenlocher 2012, "Distance transforms of sampled functions"):
    first the nearest ``True`` row within each column, then, per row, the lower envelope of the parabolas
    ``(x - k)^2 + d_k^2`` over the columns ``k`` that hold a ``True`` pixel.
    """
    if mask.ndim != 2 or not mask.any():
        raise ValueError("nearest_true needs a 2-D mask with at least one True pixel")
    h, w = mask.shape
    # Only columns holding a True pixel can be nearest: the "sites"; both passes work on those only.
    sites = np.flatnonzero(mask.any(axis=0))
    col_d2, nearest_row = _nearest_in_columns(mask[:, sites])
    popped, start = _lower_envelopes(col_d2, sites)

    # Along a row, envelope entry m is the nearest from its start to the next entry's start; a start s that is
    # an integer goes to the entry before (tie -> smaller column), so entry m covers the integer columns from
    # floor(s) + 1 on. Entries are read row by row, hence the transposes to (H, n_sites).
    in_use = ~popped.T
    entry_site = np.broadcast_to(np.arange(sites.size), in_use.shape)[in_use]
    per_row = np.count_nonzero(in_use, axis=1)
    entry_row = np.repeat(np.arange(h), per_row)
    start_x = np.clip(np.floor(start.T[in_use]) + 1, 0, w).astype(np.int64)  # first entry: -inf -> 0
    end_x = np.empty_like(start_x)
    end_x[:-1] = start_x[1:]
    end_x[np.cumsum(per_row) - 1] = w  # the last entry of each row runs to the right edge
    col = sites[entry_site]
    return NearestRuns(index=nearest_row[entry_site, entry_row] * w + col, col=col,
                       dy2=col_d2[entry_site, entry_row], length=end_x - start_x)


def _nearest_in_columns(columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pass 1: for every pixel of a bool (H, n) array whose columns each hold a True pixel, the nearest True
    row in its column (on a tie the upper one, which makes "smallest row" the second tie rule).

    Returns:
        ``(col_d2, nearest_row)``, both (n, H) (column-major for pass 2): the squared vertical distance
        (float64) and that row (int64).
    """
    h = columns.shape[0]
    # int32 halves the memory traffic; distances inside a column stay far below 2^31
    row_index = np.arange(h, dtype=np.int32)[:, None]
    above = np.where(columns, row_index, np.int32(-1))
    np.maximum.accumulate(above, axis=0, out=above)
    below = np.where(columns, row_index, np.int32(h))
    below = np.minimum.accumulate(below[::-1], axis=0)[::-1]
    far = np.int32(2 * h + 1)  # farther than any real distance inside a column
    d_above = np.where(above >= 0, row_index - above, far)
    d_below = np.where(below < h, below - row_index, far)
    nearest_row = np.where(d_above <= d_below, above, below).T.astype(np.int64)
    col_d2 = (np.minimum(d_above, d_below).astype(np.float64) ** 2).T
    return np.ascontiguousarray(col_d2), nearest_row


def _lower_envelopes(col_d2: np.ndarray, sites: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pass 2: per row, the lower envelope of the parabolas ``col_d2[j] + (x - sites[j])^2``.

    Each row's envelope is a stack (Felzenszwalb & Huttenlocher); all rows advance together, one site per
    step. Every row pushes every site, so after step j all stacks have j on top and the stacks can be stored
    as linked lists in dense (site, row) arrays: ``below[j, i]`` is the entry under j in row i's stack and
    ``start[j, i]`` where j starts to be the nearest. A popped entry is never pushed again, so the final
    envelope of row i is the set of sites not marked popped, in site order.

    Args:
        col_d2: float64 (n_sites, R), exact integers.
        sites: int (n_sites,), increasing columns.

    Returns:
        ``(popped, start)``: bool and float64 arrays (n_sites, R).
    """
    n_sites, h = col_d2.shape
    height = col_d2 + (sites.astype(np.float64) ** 2)[:, None]  # exact integers below 2^53
    height_flat = height.ravel()
    two_col_flat = np.repeat(2.0 * sites, h)  # 2 * column of every (site, row) entry, flat
    below = np.empty((n_sites, h), dtype=np.int64)  # flat index of the entry under (j, i)
    start = np.empty((n_sites, h), dtype=np.float64)
    popped = np.zeros((n_sites, h), dtype=bool)
    below_flat, start_flat, popped_flat = below.ravel(), start.ravel(), popped.ravel()
    start[0] = -np.inf  # never popped: the first site is always part of the envelope
    all_rows = np.arange(h)
    for j in range(1, n_sites):
        two_k = 2.0 * sites[j]
        height_j = height[j]
        left = start[j]
        # Where site j's parabola crosses the top one's. Numerator and denominator are exact integers, and two
        # distinct such ratios differ by far more than a double's rounding for images below ~4000 pixels a
        # side, so the comparisons are exact. On equality the top site only touches the envelope at a point
        # where the entry below it is equally near and wins the tie (smaller column): popping it is safe.
        np.divide(height_j - height[j - 1], two_k - 2.0 * sites[j - 1], out=left)
        under = below[j]
        np.add(all_rows, (j - 1) * h, out=under)
        pending = np.flatnonzero(left <= start[j - 1])
        if pending.size:
            top = under[pending]
            while True:
                popped_flat[top] = True
                top = below_flat[top]
                cross = (height_j[pending] - height_flat[top]) / (two_k - two_col_flat[top])
                left[pending] = cross
                under[pending] = top
                again = cross <= start_flat[top]
                if not again.any():
                    break
                pending, top = pending[again], top[again]
    return popped, start
