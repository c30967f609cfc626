"""Run recipe ablations at reduced cost and print the table docs/TRAINING.md keeps.

An ablation file is JSON: the shared ``csnet train`` options, how to score, and one entry per arm with the
options that arm changes (an arm's options are appended after the shared ones, so they win)::

    {"train": ["--init", "stages/v3c-224px-s250.safetensors", "--size", "112", ...],
     "val": "/work/runs/split/PASCAL-S-val.txt", "size": 112,
     "arms": [{"name": "base", "args": []}, {"name": "bce only", "args": ["--loss", "bce"]}]}

An arm may also have ``"then"``: the options of a second training run that starts from the first one's
``last.safetensors`` (a resolution schedule: most images at a small size, then a short run at the full one);
its rows count both runs' time. With ``"prune"`` beside ``"then"`` (``csnet prune`` options, e.g.
``["--threshold", "1e-20"]``), the first run's weights are pruned before the second starts from them: the
architecture route (train a wide network, prune, fine-tune) as one arm. Each arm trains into ``OUT/<arm>`` and
is scored on the held-out list with ``csnet evaluate``; its row (max F, MAE, S, the final network's parameter
count, wall seconds of the training commands and of their epochs) is appended to ``OUT/results.jsonl``. An arm
already there is skipped, so an interrupted ablation continues where it stopped (a half-trained arm is
retrained from the start).

    python tools/ablate.py ablation.json -o /work/runs/ablate [--only NAME] [--threads N]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "arm"


def _done(results: Path) -> dict[str, dict[str, Any]]:
    if not results.is_file():
        return {}
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    return {row["arm"]: row for row in rows}


def arm_phases(arm: dict[str, Any]) -> list[list[str]]:
    """The ``csnet train`` options an arm adds to the shared ones, per run: one run, or two with ``then``."""
    return [arm.get("args", [])] + ([arm["then"]] if "then" in arm else [])


def spec_error(spec: dict[str, Any]) -> str | None:
    """Why the ablation file cannot run (checked before anything trains), or ``None``."""
    for arm in spec["arms"]:
        if "prune" in arm and "then" not in arm:
            return f"arm {arm['name']!r}: 'prune' needs a 'then' run to fine-tune the pruned network"
    return None


def run_arm(spec: dict[str, Any], arm: dict[str, Any], out: Path, threads: int | None) -> dict[str, Any]:
    """Train (one run, or two with ``then``) and score one arm; returns its row."""
    run_dir = out / _slug(arm["name"])
    if run_dir.exists():  # an interrupted arm: start it again rather than mix two runs
        subprocess.run(["rm", "-rf", str(run_dir)], check=True)
    threads_args = ["--threads", str(threads)] if threads else []
    phases = arm_phases(arm)
    dirs = [run_dir] if len(phases) == 1 else [run_dir / f"phase{i + 1}" for i in range(len(phases))]
    start, step_s = time.perf_counter(), 0.0
    for i, (extra, phase_dir) in enumerate(zip(phases, dirs)):
        init = []
        if i:  # the last --init wins
            init_file = dirs[i - 1] / "last.safetensors"
            if "prune" in arm:
                pruned = run_dir / "pruned.safetensors"
                subprocess.run([sys.executable, "-m", "csnet", "prune", str(init_file), *arm["prune"],
                                "-o", str(pruned)], check=True, stdout=subprocess.DEVNULL)
                init_file = pruned
            init = ["--init", str(init_file)]
        subprocess.run([sys.executable, "-m", "csnet", "train", "--out", str(phase_dir), "--no-progress",
                        *threads_args, *spec["train"], *extra, *init], check=True)
        with (phase_dir / "metrics.csv").open() as f:  # one row per epoch, the trainer's own timing
            step_s += sum(float(row["epoch_time_s"]) for row in csv.DictReader(f))
    train_s = time.perf_counter() - start
    scores = run_dir / "held-out.json"
    evaluate = [sys.executable, "-m", "csnet", "evaluate", "--model", str(dirs[-1] / "last.safetensors"),
                "--data", spec["val"], "--size", str(spec["size"]), "--json", str(scores), *threads_args]
    subprocess.run(evaluate, check=True, stdout=subprocess.DEVNULL)
    metrics = json.loads(scores.read_text())[0]
    args = (arm.get("args", []) + (["prune", *arm["prune"]] if "prune" in arm else [])
            + (["then", *arm["then"]] if "then" in arm else []))
    return {"arm": arm["name"], "args": args, "maxF": metrics["maxF"], "MAE": metrics["MAE"],
            "S": metrics["S"], "params": _parameters(dirs[-1] / "last.safetensors"),
            "train_s": round(train_s, 1), "epoch_s": round(step_s, 1), "size": spec["size"]}


def _parameters(model_file: Path) -> int:
    from csnet.models import load_model

    return sum(p.numel() for p in load_model(str(model_file)).parameters())


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| arm | changes | params | max F | MAE | S | training s (epochs only) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        changes = " ".join(r["args"]) or "(base)"
        params = f"{r['params']:,}" if "params" in r else ""  # rows written before the column existed
        lines.append(f"| {r['arm']} | `{changes}` | {params} | {r['maxF']:.4f} | {r['MAE']:.4f} | {r['S']:.4f} | "
                     f"{r['train_s']:.0f} ({r['epoch_s']:.0f}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", type=Path, help="ablation JSON (see the module docstring)")
    parser.add_argument("-o", "--out", type=Path, required=True, help="folder of the arms' runs and results.jsonl")
    parser.add_argument("--only", action="append", default=[], metavar="NAME", help="run only these arms")
    parser.add_argument("--threads", type=int, help="CPU threads for training and scoring")
    args = parser.parse_args(argv)
    spec = json.loads(args.spec.read_text())
    error = spec_error(spec)
    if error:
        parser.error(error)
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "results.jsonl"
    for arm in spec["arms"]:
        done = _done(results)  # read again: another ablate.py may be running other arms (--only) beside this one
        if (args.only and arm["name"] not in args.only) or arm["name"] in done:
            continue
        row = run_arm(spec, arm, args.out, args.threads)
        with results.open("a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
        print(f"{arm['name']}: max F {row['maxF']:.4f}, MAE {row['MAE']:.4f} ({row['train_s']:.0f} s)", flush=True)
    done = _done(results)
    print(table([done[a["name"]] for a in spec["arms"] if a["name"] in done]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
