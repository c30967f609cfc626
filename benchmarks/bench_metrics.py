"""Time csnet.metrics against PySODMetrics on real PASCAL-S masks with realistic soft predictions.

    python benchmarks/bench_metrics.py [--n 200] [--repeat 3] [--data DIR]

Maps are decoded and built before timing (I/O is not measured). Each figure is the best of ``--repeat`` runs,
in milliseconds per image. Both implementations are single-threaded numpy, so the default clock is the
process's CPU time, which a busy shared machine disturbs far less than wall time (``--clock wall`` for that).
Needs ``pysodmetrics``.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # for tests.shared_data when run from a checkout

from csnet.metrics import MAE, EMeasure, FMeasure, SMeasure, SODEvaluator, WeightedFMeasure  # noqa: E402


def _box_blur(x: np.ndarray, radius: int) -> np.ndarray:
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius + 1, radius)
        c = np.cumsum(np.pad(x, pad, mode="edge"), axis=axis)
        n = c.shape[axis]
        x = (np.take(c, np.arange(2 * radius + 1, n), axis=axis)
             - np.take(c, np.arange(0, n - 2 * radius - 1), axis=axis)) / (2 * radius + 1)
    return x


def load_pairs(root: Path, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """n (pred uint8, gt uint8) pairs: evenly spaced PASCAL-S masks, predictions = blurred, noisy truth."""
    from PIL import Image

    files = sorted((root / "masks").glob("*.png"))
    if not files:
        raise SystemExit(f"no masks in {root / 'masks'}")
    files = files[:: max(1, len(files) // n)][:n]
    rng = np.random.default_rng(0)
    pairs = []
    for i, path in enumerate(files):
        gt = np.asarray(Image.open(path).convert("L"))
        soft = 0.8 * _box_blur(gt.astype(np.float64), 3 + i % 8) + rng.normal(20, 15, gt.shape)
        pairs.append((np.clip(np.round(soft), 0, 255).astype(np.uint8), gt))
    return pairs


def best_time(make, pairs, repeat: int, clock) -> tuple[float, object]:
    """Best time (s) of stepping a fresh ``make()`` metric over all pairs; returns it and the metric."""
    best, metric = float("inf"), None
    for _ in range(repeat):
        metric = make()
        start = clock()
        for pred, gt in pairs:
            metric.step(pred, gt)
        best = min(best, clock() - start)
    return best, metric


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="number of maps (default 200)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure, best kept (default 3)")
    parser.add_argument("--data", type=Path, help="PASCAL-S folder (default ../shared/data/PASCAL-S)")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="what to time (default cpu)")
    args = parser.parse_args()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    try:
        import py_sod_metrics as ref
    except ImportError:
        raise SystemExit("needs PySODMetrics: pip install pysodmetrics") from None
    warnings.simplefilter("ignore")  # PySODMetrics' Fmeasure deprecation notice

    if args.data is None:
        from tests.shared_data import shared_root

        args.data = shared_root() / "data" / "PASCAL-S"
    pairs = load_pairs(args.data, args.n)
    pixels = np.mean([gt.size for _, gt in pairs])
    print(f"{len(pairs)} PASCAL-S maps, {pixels / 1e3:.0f}k pixels on average; "
          f"{args.clock} time, best of {args.repeat} runs, ms/image")

    rows = [
        ("F-measure (max/mean/adp)", FMeasure, ref.Fmeasure),
        ("MAE", MAE, ref.MAE),
        ("S-measure", SMeasure, ref.Smeasure),
        ("E-measure (max/mean/adp)", EMeasure, ref.Emeasure),
        ("weighted F-measure", WeightedFMeasure, ref.WeightedFmeasure),
    ]
    print(f"{'metric':<26}{'csnet':>9}{'PySODMetrics':>14}{'speed-up':>10}")
    total_ours = total_ref = 0.0
    for name, ours_cls, ref_cls in rows:
        t_ours, _ = best_time(ours_cls, pairs, args.repeat, clock)
        t_ref, _ = best_time(ref_cls, pairs, args.repeat, clock)
        total_ours += t_ours
        total_ref += t_ref
        print(f"{name:<26}{1e3 * t_ours / len(pairs):>9.2f}{1e3 * t_ref / len(pairs):>14.2f}{t_ref / t_ours:>9.2f}x")
    print(f"{'sum of the five':<26}{1e3 * total_ours / len(pairs):>9.2f}{1e3 * total_ref / len(pairs):>14.2f}"
          f"{total_ref / total_ours:>9.2f}x")

    t_all, evaluator = best_time(SODEvaluator, pairs, args.repeat, clock)
    print(f"{'SODEvaluator (all, shared)':<26}{1e3 * t_all / len(pairs):>9.2f}{1e3 * total_ref / len(pairs):>14.2f}"
          f"{total_ref / t_all:>9.2f}x")
    scores = evaluator.get_results()
    print("scores: " + ", ".join(f"{k} {v:.4f}" if k != "n" else f"n {v}" for k, v in scores.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
