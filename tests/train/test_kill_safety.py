"""Kill-safety as a property: a tiny run killed at random points, again and again, resumes to the very files
an uninterrupted run leaves.

Each attempt trains in a forked child that dies at a chosen point: a SIGKILL from the parent after a random
delay, or an ``os._exit`` injected at the n-th atomic rename of a run file (just before it: the finished
temporary stays behind; just after it) or at the n-th fsync with the temporary cut to half its size (a kill
inside the write). After every kill the folder must be usable as it is (the state loads; ``metrics.csv`` is
the state's history or one row behind it); after the last, unkilled attempt it must equal the reference run:
state (model, optimizer, scheduler, RNG), ``last.safetensors``, ``best.safetensors``, every ``metrics.csv``
row but the timing columns, and no temporary left. Mid-epoch checkpoints (``checkpoint_every=2`` of 3 steps)
put half the commits inside an epoch.
"""
from __future__ import annotations

import csv
import os
import random
import signal
import time
import traceback
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from csnet.models import load_model
from csnet.train import TrainConfig, train
from csnet.train.checkpoint import STATE_FILE, load_state
from tests.train.conftest import make_dataset

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not hasattr(os, "fork"), reason="the kill harness forks")]

INJECTED = 77  # exit status of a child that died at an injected point
TIMING_COLUMNS = {"images_per_s", "epoch_time_s"}
CAMPAIGNS = 3
KILLS_PER_CAMPAIGN = 2


def kill_config(data: Path) -> TrainConfig:
    # 8 pairs, 2 held out: 6 training images in 3 steps of 2, 2 epochs, a state after step 2 and at each
    # epoch's end (4 commits).
    return TrainConfig(model="csnet_l_x1", data=(str(data),), size=32, epochs=2, batch_size=2, workers=0,
                       device="cpu", tensorboard=False, milestones=(2,), log_every=1, val_fraction=0.25,
                       checkpoint_every=2, augment=True)


def _inject(run_dir: Path, point: str, n: int, only: str = "") -> None:
    """Make this (child) process die at the ``n``-th ``point`` touching ``run_dir`` (renames onto ``only``
    alone when given)."""
    count = {"n": 0}
    real_replace, real_fsync = os.replace, os.fsync

    def hit() -> bool:
        count["n"] += 1
        return count["n"] == n

    def replace(src, dst, *args, **kwargs):
        mine = Path(dst).parent == run_dir and (not only or Path(dst).name == only)
        if mine and point == "before_replace" and hit():
            os._exit(INJECTED)
        real_replace(src, dst, *args, **kwargs)
        if mine and point == "after_replace" and hit():
            os._exit(INJECTED)

    def fsync(fd):
        if point == "inside_write" and hit():
            os.ftruncate(fd, os.fstat(fd).st_size // 2)
            os._exit(INJECTED)
        real_fsync(fd)

    os.replace, os.fsync = replace, fsync


def _attempt(config: TrainConfig, run_dir: Path, point: str, n: int, delay: float, log: Path,
             only: str = "") -> int:
    """One forked training attempt; returns the child's exit status (or -9 when SIGKILLed)."""
    resume = (run_dir / STATE_FILE).exists()
    pid = os.fork()
    if pid == 0:  # the child: train, die where told, never return into pytest
        status = 1
        try:
            if point != "sigkill":
                _inject(run_dir, point, n, only)
            train(config, run_dir, resume=resume)
            status = 0
        except BaseException:
            log.write_text(traceback.format_exc())
        finally:
            os._exit(status)
    if point == "sigkill":
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.01)
        else:
            os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _metrics(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.read_text().splitlines())) if path.exists() else []


def _check_usable(run_dir: Path) -> None:
    """What a kill leaves: a loadable state, derived files at most one checkpoint behind it, never ahead."""
    if not (run_dir / STATE_FILE).exists():
        assert not (run_dir / "metrics.csv").exists()
        return
    state = load_state(run_dir / STATE_FILE)
    rows = _metrics(run_dir / "metrics.csv")
    history = state["history"]
    assert len(history) - 1 <= len(rows) <= len(history)
    assert [int(r["epoch"]) for r in rows] == [int(h["epoch"]) for h in history[:len(rows)]]
    if (run_dir / "last.safetensors").exists():
        load_model(run_dir / "last.safetensors")  # complete and valid, whatever its age


def _assert_same_run(reference: Path, run_dir: Path) -> None:
    a, b = load_state(reference / STATE_FILE), load_state(run_dir / STATE_FILE)
    assert a["epoch"] == b["epoch"] == 2 and not b["progress"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert a.get("ema", {}).keys() == b.get("ema", {}).keys()
    for key in a.get("ema", {}):
        assert torch.equal(a["ema"][key], b["ema"][key]), key
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        for key in sa:
            assert torch.equal(torch.as_tensor(sa[key]), torch.as_tensor(sb[key])), key
    assert a["scheduler"] == b["scheduler"]
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    assert a["best"] == b["best"]
    for name in ("last.safetensors", "best.safetensors"):
        ta, tb = load_file(reference / name), load_file(run_dir / name)
        assert ta.keys() == tb.keys(), name
        assert all(torch.equal(ta[k], tb[k]) for k in ta), name
    rows_a, rows_b = _metrics(reference / "metrics.csv"), _metrics(run_dir / "metrics.csv")
    assert len(rows_a) == len(rows_b) == 2
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows]
    assert strip(rows_a) == strip(rows_b)
    leftovers = sorted(p.name for p in run_dir.iterdir() if p.name.startswith("."))
    assert not leftovers, leftovers


@pytest.fixture(scope="module")
def reference(tmp_path_factory, one_torch_thread) -> tuple[TrainConfig, Path]:
    """The uninterrupted run every test compares with (one per module: each run costs seconds), on one
    thread like the attempts (other thread counts sum in another order)."""
    root = tmp_path_factory.mktemp("kill")
    config = kill_config(make_dataset(root / "data", n=8, size=32))
    train(config, root / "reference")
    return config, root / "reference"


def test_random_kills_resume_to_the_uninterrupted_run(reference, tmp_path: Path) -> None:
    config, reference_dir = reference
    rng = random.Random(14)
    points = ("sigkill", "before_replace", "after_replace", "inside_write")
    kills = 0
    for campaign in range(CAMPAIGNS):
        run_dir = tmp_path / f"run{campaign}"
        for attempt in range(KILLS_PER_CAMPAIGN + 1):
            last = attempt == KILLS_PER_CAMPAIGN
            point = "none" if last else points[(campaign * KILLS_PER_CAMPAIGN + attempt) % len(points)]
            n, delay = rng.randint(1, 14), rng.uniform(0.2, 2.0)
            log = tmp_path / f"child{campaign}-{attempt}.log"
            status = _attempt(config, run_dir, point, n, delay, log)
            assert status in (0, INJECTED, -signal.SIGKILL), (point, n, status, log.read_text() if log.exists() else "")
            if status == 0:
                break
            kills += 1
            _check_usable(run_dir)
        _assert_same_run(reference_dir, run_dir)
    assert kills >= CAMPAIGNS  # the campaigns did kill (most attempts die before the run ends)


def test_a_stale_derived_file_is_rewritten_on_resume(reference, tmp_path: Path) -> None:
    """The finding of issue 14: a kill between the state and ``last.safetensors`` must not leave a stale model.
    (Checkpointing at epoch ends only, against a reference that also checkpointed mid-epoch: how often a
    run saves never changes what it computes.)"""
    config, reference_dir = reference
    config = config.replace(checkpoint_every=None)
    run_dir = tmp_path / "run"
    train(config.replace(epochs=1), run_dir)
    stale = load_file(run_dir / "last.safetensors")
    # epoch 2 commits its state, then dies before deriving anything from it
    status = _attempt(config, run_dir, "after_replace", 1, 0.0, tmp_path / "child.log", only=STATE_FILE)
    assert status == INJECTED
    assert load_state(run_dir / STATE_FILE)["epoch"] == 2
    assert all(torch.equal(stale[k], v) for k, v in load_file(run_dir / "last.safetensors").items())
    assert len(_metrics(run_dir / "metrics.csv")) == 1
    train(config, run_dir, resume=True)  # nothing left to train: the resume only repairs
    _assert_same_run(reference_dir, run_dir)


def test_mid_epoch_resume_continues_from_the_step(reference, tmp_path: Path) -> None:
    """A state written after step 2 of epoch 2 resumes at step 3 of epoch 2 and ends like the reference."""
    config, reference_dir = reference
    run_dir = tmp_path / "run"
    # commits: epoch 1 step 2, epoch 1 end, epoch 2 step 2 -> the 3rd state file rename; die right after it
    status = _attempt(config, run_dir, "after_replace", 3, 0.0, tmp_path / "child.log", only=STATE_FILE)
    assert status == INJECTED
    state = load_state(run_dir / STATE_FILE)
    assert (state["epoch"], state["progress"]["step"]) == (1, 2)
    assert load_model(run_dir / "last.safetensors") is not None
    train(config, run_dir, resume=True)
    _assert_same_run(reference_dir, run_dir)


@pytest.mark.parametrize("schedule", [{}, {"lr_schedule": "cosine", "warmup_epochs": 1,
                                          "lr_schedule_unit": "iteration"}], ids=["per-epoch", "per-iteration"])
def test_mid_epoch_resume_with_ema_and_strong_augment(tmp_path: Path, one_torch_thread, schedule) -> None:
    """The EMA (with its update count), the strong recipe's draws and a schedule stepped at every iteration
    survive a kill mid-epoch: the resumed run ends bit-identical to its own uninterrupted run, EMA weights
    and model files included."""
    config = kill_config(make_dataset(tmp_path / "data", n=8, size=32)).replace(
        ema_decay=0.9, augment_recipe="strong", **schedule)
    train(config, tmp_path / "reference")
    run_dir = tmp_path / "run"
    status = _attempt(config, run_dir, "after_replace", 3, 0.0, tmp_path / "child.log", only=STATE_FILE)
    assert status == INJECTED
    state = load_state(run_dir / STATE_FILE)
    assert (state["epoch"], state["progress"]["step"]) == (1, 2)
    assert int(state["ema"]["n_averaged"]) == 5  # 3 steps of epoch 1 and 2 of epoch 2
    train(config, run_dir, resume=True)
    _assert_same_run(tmp_path / "reference", run_dir)
    reference = load_state(tmp_path / "reference" / STATE_FILE)
    assert any(not torch.equal(reference["model"][k], reference["ema"][f"module.{k}"])
               for k in reference["model"])  # the EMA is not the trained model


def test_a_damaged_state_stops_the_resume_with_one_line(tmp_path: Path) -> None:
    from csnet.train import TrainingError
    from csnet.train.checkpoint import save_state

    data = make_dataset(tmp_path / "data", n=8, size=32)
    config = kill_config(data).replace(epochs=1, checkpoint_every=None)
    run_dir = tmp_path / "run"
    train(config, run_dir)
    state = load_state(run_dir / STATE_FILE)
    key = next(iter(state["model"]))
    state["model"][key] = torch.zeros(7, 7)  # well-formed, but not this model's
    save_state(run_dir / STATE_FILE, {k: v for k, v in state.items() if k != "format"})
    with pytest.raises(TrainingError, match="cannot resume from this state") as error:
        train(config.replace(epochs=2), run_dir, resume=True)
    assert "\n" not in str(error.value)


def test_checkpoint_every_is_a_cli_option_and_a_runtime_field(tmp_path: Path) -> None:
    from csnet.cli.main import build_parser
    from csnet.cli.train import _overrides
    from csnet.train import ConfigError
    from csnet.train.config import RUNTIME_FIELDS

    args = build_parser().parse_args(["train", "--data", "x", "--checkpoint-every", "500"])
    assert TrainConfig().replace(**_overrides(args)).checkpoint_every == 500
    assert "checkpoint_every" in RUNTIME_FIELDS  # how often to save never changes what is computed
    with pytest.raises(ConfigError, match="checkpoint_every"):
        TrainConfig(checkpoint_every=0)
