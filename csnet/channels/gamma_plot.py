"""Log-scale histogram of BatchNorm ``|gamma|`` (main paper Fig. 6): the gap that makes the threshold easy.

Needs matplotlib (the ``plot`` extra); it is imported inside :func:`plot_gamma_histogram` and used through its
object-oriented API only (no pyplot, no global backend switch).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import numpy as np

from csnet.io.atomic import atomic_path

__all__ = ["plot_gamma_histogram", "GAMMA_FLOOR"]

GAMMA_FLOOR = 1e-45
"""``|gamma|`` values below this (exact zeros included) are drawn at it: the smallest float32 subnormal."""


def _values(gammas: Union[Mapping[str, object], Sequence[float], np.ndarray]) -> np.ndarray:
    if isinstance(gammas, Mapping):
        parts = [np.asarray(v, dtype=np.float64).reshape(-1) for v in gammas.values()]
        return np.concatenate(parts) if parts else np.zeros(0)
    return np.asarray(gammas, dtype=np.float64).reshape(-1)


def plot_gamma_histogram(
    gammas: Union[Mapping[str, object], Sequence[float], np.ndarray],
    path: Union[str, os.PathLike],
    threshold: Optional[float] = None,
    title: str = "",
) -> Path:
    """Write a histogram of ``log10 |gamma|`` to ``path`` (format from its suffix, e.g. ``.png``), atomically.

    Args:
        gammas: ``|gamma|`` values, flat or as ``{layer name: values}`` (e.g. :func:`csnet.channels.prune.bn_gammas`).
        path: output image file.
        threshold: draw this pruning threshold as a vertical line and colour the bars below it.
        title: figure title.

    Raises:
        ImportError: matplotlib is missing (the message names the ``plot`` extra).
        ValueError: no values.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError("plotting needs matplotlib: pip install 'csnet[plot]'") from error

    values = np.abs(_values(gammas))
    if values.size == 0:
        raise ValueError("no gamma values to plot")
    logs = np.log10(np.maximum(values, GAMMA_FLOOR))
    low, high = math.floor(logs.min()), math.ceil(logs.max())
    bins = np.arange(low, max(high, low + 1) + 0.5, 0.5)

    figure = Figure(figsize=(7, 4), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    if threshold is not None and threshold > 0:
        cut = math.log10(threshold)
        below, above = logs[logs < cut], logs[logs >= cut]
        axes.hist([below, above], bins=bins, stacked=True, color=["tab:red", "tab:blue"],
                  label=[f"below threshold: {below.size}", f"at or above: {above.size}"])
        axes.axvline(cut, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
        if below.size and above.size:
            gap = above.min() - below.max()
            axes.annotate(f"gap: {gap:.1f} decades", xy=((above.min() + below.max()) / 2, 0.5),
                          xycoords=("data", "axes fraction"), ha="center")
        axes.legend(loc="upper left")
    else:
        axes.hist(logs, bins=bins, color="tab:blue")
    axes.set_yscale("log")
    axes.set_xlabel("log10 |gamma|  (BatchNorm weight)")
    axes.set_ylabel("channels")
    axes.set_title(title or f"|gamma| of {values.size} BatchNorm channels")
    figure.tight_layout()

    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=path.suffix.lstrip(".") or "png")
    return path
