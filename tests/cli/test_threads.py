"""The CPU-thread policy shared by ``csnet predict`` and ``csnet train``."""
from __future__ import annotations

import pytest
import torch

from csnet.cli import threads
from csnet.cli.main import main
from csnet.cli.threads import choose_threads


def test_explicit_threads_win_over_the_load() -> None:
    assert choose_threads(3, load=50.0, cores=2) == 3
    assert choose_threads(1, load=0.0, cores=16) == 1
    with pytest.raises(ValueError, match="--threads"):
        choose_threads(0, load=0.0, cores=2)


def test_a_busy_machine_gets_one_thread_an_idle_one_keeps_the_default() -> None:
    assert choose_threads(None, load=2.0, cores=2) == 1      # load == cores: every core taken
    assert choose_threads(None, load=7.5, cores=4) == 1
    assert choose_threads(None, load=1.9, cores=2) is None   # a core to spare: torch's default
    assert choose_threads(None, load=None, cores=2) is None  # no load average on this platform


def test_train_applies_the_policy(monkeypatch, tmp_path) -> None:
    previous = torch.get_num_threads()
    monkeypatch.setattr(threads, "load_average", lambda: 99.0)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    try:
        torch.set_num_threads(2)
        # no --data: the command stops with an error after the thread count is set
        assert main(["train", "--out", str(tmp_path / "run"), "--no-progress"]) == 1
        assert torch.get_num_threads() == 1
        assert main(["train", "--threads", "0", "--out", str(tmp_path / "run")]) == 1
    finally:
        torch.set_num_threads(previous)


def test_ranks_on_one_machine_share_its_cores() -> None:
    assert choose_threads(None, load=0.0, cores=2, ranks=2) == 1
    assert choose_threads(None, load=0.0, cores=16, ranks=4) == 4
    assert choose_threads(None, load=0.0, cores=2, ranks=3) == 1   # never 0
    assert choose_threads(2, load=0.0, cores=2, ranks=2) == 2      # --threads still wins
