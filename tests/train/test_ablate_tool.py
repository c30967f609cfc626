"""tools/ablate.py: an arm of the architecture route (train wide, prune, fine-tune) is one row."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from csnet.models import load_model
from tests.scripts import load_script
from tests.shared_data import REPO_ROOT


def _ablate_main():
    return load_script("tools/ablate.py").main


def test_a_pruned_arm_fine_tunes_the_pruned_network_and_reports_its_size(
        tiny_data: Path, tiny_val: Path, tmp_path: Path, capsys) -> None:
    spec = {"train": ["--data", str(tiny_data), "--val", str(tiny_val), "--size", "32", "--epochs", "1",
                      "--batch-size", "4", "--workers", "0", "--no-tensorboard"],
            "val": str(tiny_val), "size": 32,
            "arms": [{"name": "x1 route", "args": ["--model", "csnet_x1"],
                      "prune": ["--ratio", "0.5", "--min-channels", "1"], "then": ["--lr", "1e-5"]}]}
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    out = tmp_path / "out"
    assert _ablate_main()([str(spec_file), "-o", str(out), "--threads", "1"]) == 0

    row = json.loads((out / "results.jsonl").read_text())
    wide = sum(p.numel() for p in load_model(str(out / "x1-route" / "phase1" / "last.safetensors")).parameters())
    pruned = sum(p.numel() for p in load_model(str(out / "x1-route" / "pruned.safetensors")).parameters())
    assert pruned < wide
    assert row["params"] == pruned  # the second run trained the pruned network, not the wide one
    assert row["args"] == ["--model", "csnet_x1", "prune", "--ratio", "0.5", "--min-channels", "1",
                           "then", "--lr", "1e-5"]
    assert 0 <= row["MAE"] <= 1 and 0 <= row["maxF"] <= 1
    assert "| x1 route |" in capsys.readouterr().out

    # A finished arm is skipped on a second call: nothing is retrained.
    before = (out / "x1-route" / "phase2" / "last.safetensors").stat().st_mtime_ns
    assert _ablate_main()([str(spec_file), "-o", str(out)]) == 0
    assert (out / "x1-route" / "phase2" / "last.safetensors").stat().st_mtime_ns == before


def test_a_prune_without_a_run_after_it_is_refused_before_anything_trains(tmp_path: Path, capsys) -> None:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({"train": [], "val": "v.txt", "size": 32,
                                     "arms": [{"name": "pruned only", "prune": ["--ratio", "0.5"]}]}))
    with pytest.raises(SystemExit) as stop:
        _ablate_main()([str(spec_file), "-o", str(tmp_path / "out")])
    assert stop.value.code == 2
    assert "'pruned only': 'prune' needs a 'then' run" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("spec_file", sorted((REPO_ROOT / "configs" / "ablations").glob("*.json")),
                         ids=lambda path: path.name)
def test_the_committed_ablation_files_are_train_command_lines_that_parse(spec_file: Path) -> None:
    """A kept ablation file must still run when csnet train's options change, not fail an hour in."""
    from csnet.cli.main import build_parser
    from csnet.cli.train import _overrides
    from csnet.train.config import TrainConfig

    ablate = load_script("tools/ablate.py")
    spec = json.loads(spec_file.read_text())
    names = [arm["name"] for arm in spec["arms"]]
    assert len(set(names)) == len(names) and spec["size"] > 0 and spec["val"]
    assert ablate.spec_error(spec) is None
    parser = build_parser()
    for arm in spec["arms"]:
        for extra in ablate.arm_phases(arm):
            args = parser.parse_args(["train", "--out", "unused", *spec["train"], *extra])  # exits on a bad option
            TrainConfig().replace(**_overrides(args))  # and raises on a bad value
