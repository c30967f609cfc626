"""Keep one training stage's result in the repo, small, with its lineage, so a later session on an empty machine
can warm-start from it (``csnet train --init stages/<name>.safetensors``).

    python tools/save_stage.py /work/runs/v3-a112 --epoch 1 --name v3a-112px-e1 \
        --parent none --note "csnet_l_x2 from scratch, teacher maps + ground truth"

Writes ``stages/<name>.safetensors`` (the run's model file at that epoch, lineage in its metadata) and
``stages/<name>.json``: the command, the config, the metrics row of that epoch, the parent stage and the git
commit whose code ran the stage (``--commit``, default the checkout's HEAD). Stages are not bundled: only a
stage that beats the bundled weights on the held-out split is promoted with ``tools/bundle_weights.py``.
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
from pathlib import Path

from csnet.io.atomic import atomic_write_text
from csnet.models import load_model, save_model

STAGES = Path(__file__).resolve().parents[1] / "stages"


def _metrics_row(run_dir: Path, epoch: int) -> dict[str, str]:
    with open(run_dir / "metrics.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if int(row["epoch"]) == epoch:
                return row
    raise SystemExit(f"{run_dir / 'metrics.csv'}: no row for epoch {epoch}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--epoch", type=int, help="the finished epoch whose model is kept (last.safetensors must "
                                                 "be from it); omit for a mid-epoch checkpoint (--checkpoint-every)")
    parser.add_argument("--scores", type=Path, help="csnet evaluate --json output of the kept model on the "
                                                    "held-out split (needed without --epoch)")
    parser.add_argument("--name", required=True)
    parser.add_argument("--parent", default="none", help="the stage this run warm-started from")
    parser.add_argument("--note", default="")
    parser.add_argument("--commit", help="git commit whose code ran the stage (default: HEAD)")
    args = parser.parse_args()
    if args.epoch is None and args.scores is None:
        parser.error("a mid-epoch stage needs --scores (its held-out figures)")
    row = _metrics_row(args.run_dir, args.epoch) if args.epoch is not None else {}
    if args.scores is not None:
        row["held_out"] = json.loads(args.scores.read_text())
    model = load_model(args.run_dir / "last.safetensors")
    commit = subprocess.run(["git", "rev-parse", args.commit or "HEAD"], capture_output=True, text=True,
                            cwd=STAGES.parent).stdout.strip()
    lineage = {
        "name": args.name,
        "parent": args.parent,
        "note": args.note,
        "command": (args.run_dir / "command.txt").read_text().strip(),
        "config": json.loads((args.run_dir / "config.json").read_text()),
        "epoch": args.epoch if args.epoch is not None else "mid-epoch (last checkpoint of --checkpoint-every)",
        "metrics": row,
        "git_commit": commit,
        # what was trained: the config's ``model`` only names the architecture of runs from scratch (an
        # ``--init`` run takes the init file's, whatever ``model`` says)
        "architecture": model.config.name,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    STAGES.mkdir(exist_ok=True)
    out = save_model(model, STAGES / f"{args.name}.safetensors", metadata={"lineage": lineage})
    atomic_write_text(STAGES / f"{args.name}.json", json.dumps(lineage, indent=1) + "\n")
    print(f"{out} ({out.stat().st_size:,} bytes, {lineage['parameters']:,} params), "
          f"val max F {row.get('val_maxF', '-')} MAE {row.get('val_MAE', '-')}")


if __name__ == "__main__":
    main()
