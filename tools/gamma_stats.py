"""Per-epoch |gamma| statistics of training runs: how fast (dynamic) weight decay kills channels.

The trainer keeps only the last and best checkpoints, so this reads ``RUN_DIR/last.safetensors`` after every
epoch while the runs train (``--watch``) and appends one CSV row per run and epoch: the median and max |gamma|
of the BN layers DWD governs (every BN inside an ILBlock) and how many are below 1e-3, 1e-6 and 1e-20.
``--plot`` draws those counts and the validation max F against the epoch.

    python tools/gamma_stats.py runs/dwd runs/standard --watch --csv gammas.csv
    python tools/gamma_stats.py --from-csv gammas.csv --plot gammas.png
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

FIELDS = ("run", "epoch", "n", "median", "max", "below_1e-3", "below_1e-6", "below_1e-20", "val_maxF")
THRESHOLDS = {"below_1e-3": 1e-3, "below_1e-6": 1e-6, "below_1e-20": 1e-20}


def snapshot(run_dir: Path) -> dict | None:
    """The row for the newest finished epoch of ``run_dir`` (None before its first epoch)."""
    import numpy as np
    import torch

    import csnet
    from csnet.channels.dwd import csnet_targets

    metrics = run_dir / "metrics.csv"
    if not metrics.exists():
        return None
    rows = list(csv.DictReader(metrics.read_text().splitlines()))
    if not rows:
        return None
    model = csnet.load_model(run_dir / "last.safetensors")
    gammas = torch.cat([t.bn.weight.detach().abs().flatten() for t in csnet_targets(model)]).double().numpy()
    row = {"run": run_dir.name, "epoch": int(rows[-1]["epoch"]), "n": gammas.size,
           "median": float(np.median(gammas)), "max": float(gammas.max()), "val_maxF": rows[-1].get("val_maxF", "")}
    row.update({key: int((gammas < t).sum()) for key, t in THRESHOLDS.items()})
    return row


def watch(runs: list[Path], out: Path, epochs: int, poll_s: float = 20.0) -> None:
    """Append a row whenever a run finishes an epoch, until every run has written epoch ``epochs``."""
    seen = set()
    if out.exists():
        seen = {(r["run"], int(r["epoch"])) for r in csv.DictReader(out.read_text().splitlines())}
    while True:
        done = 0
        for run in runs:
            try:
                row = snapshot(run)
            except Exception as error:  # noqa: BLE001 - a checkpoint being replaced; try again next poll
                print(f"{run}: {error}", file=sys.stderr)
                continue
            if row is None:
                continue
            if (row["run"], row["epoch"]) not in seen:
                new = not out.exists()
                with out.open("a", newline="") as handle:
                    writer = csv.DictWriter(handle, fieldnames=FIELDS)
                    if new:
                        writer.writeheader()
                    writer.writerow(row)
                seen.add((row["run"], row["epoch"]))
                print(row, flush=True)
            done += row["epoch"] >= epochs
        if done == len(runs):
            return
        time.sleep(poll_s)


def plot(csv_path: Path, out: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from csnet.io.atomic import atomic_path

    rows = list(csv.DictReader(csv_path.read_text().splitlines()))
    runs = list(dict.fromkeys(r["run"] for r in rows))
    figure = Figure(figsize=(11, 3.6), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 3)
    for index, run in enumerate(runs):
        color = f"C{index}"
        mine = sorted((r for r in rows if r["run"] == run), key=lambda r: int(r["epoch"]))
        epochs = [int(r["epoch"]) for r in mine]
        axes[0].plot(epochs, [float(r["median"]) for r in mine], marker=".", color=color, label=run)
        n = int(mine[0]["n"])
        for key, style in (("below_1e-3", ":"), ("below_1e-20", "-")):
            axes[1].plot(epochs, [100 * int(r[key]) / n for r in mine], style, marker=".", color=color,
                         label=f"{run}: |gamma| < {key.split('_')[1]}")
        scored = [(int(r["epoch"]), float(r["val_maxF"])) for r in mine if r["val_maxF"]]
        axes[2].plot(*zip(*scored), marker="o", color=color, label=run)
    axes[0].set(yscale="log", xlabel="epoch", ylabel="median |gamma|", title="median |gamma| (governed BNs)")
    axes[1].set(xlabel="epoch", ylabel="% of channels", title="channels below a threshold")
    axes[2].set(xlabel="epoch", ylabel="max F", title="validation max F")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    figure.tight_layout()
    with atomic_path(out) as tmp:
        figure.savefig(tmp, format="png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", type=Path, help="run folders of csnet train")
    parser.add_argument("--csv", type=Path, help="append rows here")
    parser.add_argument("--watch", action="store_true", help="keep polling until every run reaches --epochs")
    parser.add_argument("--epochs", type=int, default=None, help="last epoch (default: each run's config)")
    parser.add_argument("--from-csv", type=Path, help="plot this CSV instead of reading runs")
    parser.add_argument("--plot", type=Path, help="write the curves as PNG")
    args = parser.parse_args(argv)
    csv_path = args.from_csv or args.csv
    if args.runs:
        if args.csv is None:
            parser.error("--csv is required with run folders")
        if args.watch:
            import json

            epochs = args.epochs or max(json.loads((r / "config.json").read_text())["epochs"] for r in args.runs)
            watch(args.runs, args.csv, epochs)
        else:
            rows = [row for row in map(snapshot, args.runs) if row is not None]
            new = not args.csv.exists()
            with args.csv.open("a", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=FIELDS)
                if new:
                    writer.writeheader()
                writer.writerows(rows)
    if args.plot:
        if csv_path is None or not csv_path.exists():
            parser.error("--plot needs --csv or --from-csv with rows")
        plot(csv_path, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
