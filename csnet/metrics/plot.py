"""Precision-recall and F-measure-threshold curves as PNG files (needs the ``plot`` extra: matplotlib)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Union

import numpy as np

from csnet.io.atomic import atomic_path

__all__ = ["plot_curves", "PR_FILE", "F_FILE"]

PR_FILE = "pr_curves.png"
F_FILE = "f_curves.png"


def plot_curves(curves: Mapping[str, Mapping[str, np.ndarray]],
                out_dir: Union[str, os.PathLike]) -> list[Path]:
    """Write the PR curves and the F-measure-threshold curves of several datasets, one line per dataset.

    Args:
        curves: dataset name -> :meth:`csnet.metrics.SODEvaluator.get_curves` (``threshold``, ``precision``,
            ``recall``, ``fmeasure``: float arrays (256,)).
        out_dir: folder to write :data:`PR_FILE` and :data:`F_FILE` into (created if needed).

    Returns:
        The paths written.

    Raises:
        ImportError: matplotlib is not installed (``pip install 'csnet[plot]'``).
    """
    try:
        from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend
    except ImportError as error:
        raise ImportError("plotting needs matplotlib: pip install 'csnet[plot]'") from error

    out_dir = Path(out_dir)
    pr = Figure(figsize=(5, 5))
    ax_pr = pr.add_subplot()
    fc = Figure(figsize=(5, 5))
    ax_f = fc.add_subplot()
    for name, c in curves.items():
        ax_pr.plot(c["recall"], c["precision"], label=name)
        best = int(np.argmax(c["fmeasure"]))
        line, = ax_f.plot(c["threshold"], c["fmeasure"], label=f"{name} (max {c['fmeasure'][best]:.4f})")
        ax_f.plot(c["threshold"][best], c["fmeasure"][best], "o", color=line.get_color())
    ax_pr.set(xlabel="recall", ylabel="precision", title="Precision-recall", xlim=(0, 1), ylim=(0, 1.01))
    ax_f.set(xlabel="threshold", ylabel=r"F-measure ($\beta^2$ = 0.3)", title="F-measure vs threshold",
             xlim=(0, 1), ylim=(0, 1.01))
    paths = []
    for fig, ax, filename in ((pr, ax_pr, PR_FILE), (fc, ax_f, F_FILE)):
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower left", fontsize="small")
        fig.tight_layout()
        path = out_dir / filename
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120)
        paths.append(path)
    return paths
