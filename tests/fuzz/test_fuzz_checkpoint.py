"""Fuzz target: the training-state reader (csnet.train.checkpoint.load_state): mutated state files and
states whose fields have the wrong types or are missing."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from csnet.train.checkpoint import CheckpointError, FORMAT, load_state, save_state
from tests.fuzz.strategies import fuzz_settings, mutated


def _state() -> dict:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1), torch.nn.BatchNorm2d(2))
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.zeros(1, 3, 2, 2)).sum().backward()
    optimizer.step()
    return {"epoch": 1, "progress": {}, "model_config": "{}", "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": {"last_epoch": 1}, "scaler": {},
            "rng": {"torch": torch.get_rng_state()}, "best": {}, "history": [{"epoch": 1, "loss": 0.5}],
            "config": "{}"}


@pytest.fixture(scope="module")
def seed(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("seed") / "state.pt"
    save_state(path, _state())
    return path.read_bytes()


def _check(path: Path) -> None:
    try:
        state = load_state(path)
    except CheckpointError as error:
        assert "\n" not in str(error) and str(path) in str(error)
        return
    assert isinstance(state, dict) and isinstance(state["epoch"], int) and isinstance(state["model"], dict)


@fuzz_settings()
@given(data=st.data())
def test_mutated_state_files_load_or_raise_checkpoint_error(seed: bytes, tmp_path: Path, data) -> None:
    path = tmp_path / "state.pt"
    path.write_bytes(data.draw(mutated([seed])))
    _check(path)


values = st.one_of(st.none(), st.integers(-3, 3), st.floats(), st.text(max_size=4), st.lists(st.integers(), max_size=3),
                   st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), st.just(torch.zeros(2)))


@fuzz_settings(share=1 / 3)
@given(changes=st.dictionaries(st.sampled_from(sorted(_state())), st.one_of(st.just("drop"), values), max_size=4))
def test_states_with_wrong_fields_load_or_raise_checkpoint_error(tmp_path: Path, changes) -> None:
    state = {"format": FORMAT, **_state()}
    for key, value in changes.items():
        if isinstance(value, str) and value == "drop":
            state.pop(key)
        else:
            state[key] = value
    buffer = io.BytesIO()
    torch.save(state, buffer)
    path = tmp_path / "state.pt"
    path.write_bytes(buffer.getvalue())
    _check(path)
