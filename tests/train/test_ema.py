"""EMA of the weights (``ema_decay``): the closed form, what the run saves and validates, the CLI flags."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from csnet.cli.main import build_parser
from csnet.models.hub import read_metadata
from csnet.train import TrainConfig, TrainingError, resume_config, train
from csnet.train.checkpoint import STATE_FILE, load_state
from csnet.train.config import RUNTIME_FIELDS
from csnet.train.trainer import ema_model

pytestmark = pytest.mark.usefixtures("one_thread")


def test_ema_follows_the_closed_form_for_parameters_and_bn_buffers() -> None:
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    decay = 0.75
    ema = ema_model(model, decay)
    values = [2.0, -1.0, 4.0, 0.5]
    for value in values:  # the "trained" model is a constant each step: ema has a closed form
        with torch.no_grad():
            for tensor in [*model.parameters(), model[1].running_mean, model[1].running_var]:
                tensor.fill_(value)
        ema.update_parameters(model)
    # First update copies; each later one is ema = decay * ema + (1 - decay) * value.
    expected = values[0]
    for value in values[1:]:
        expected = decay * expected + (1 - decay) * value
    averaged = ema.module
    for tensor in [*averaged.parameters(), averaged[1].running_mean, averaged[1].running_var]:
        assert torch.allclose(tensor, torch.full_like(tensor, expected)), tensor
    assert int(ema.n_averaged) == len(values)


def test_run_with_ema_saves_and_validates_the_average(tiny_data: Path, tmp_path: Path) -> None:
    config = TrainConfig(model="csnet_l_x1", data=(str(tiny_data),), size=32, epochs=2, batch_size=4, workers=0,
                         device="cpu", tensorboard=False, milestones=(2,), log_every=1, val_fraction=0.25,
                         ema_decay=0.5)
    result = train(config, tmp_path / "run")
    state = load_state(tmp_path / "run" / STATE_FILE)
    ema = {k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")}
    assert ema.keys() == state["model"].keys()
    assert int(state["ema"]["n_averaged"]) == 2 * 2  # 6 training pairs in batches of 4, 2 epochs
    assert any(not torch.equal(ema[k], state["model"][k]) for k in ema)
    saved = load_file(tmp_path / "run" / "last.safetensors")
    assert saved.keys() == ema.keys() and all(torch.equal(saved[k], ema[k]) for k in saved)
    assert read_metadata(tmp_path / "run" / "last.safetensors")["weights"] == "ema (decay 0.5)"
    assert result.best is not None and (tmp_path / "run" / "best.safetensors").exists()
    with pytest.raises(TrainingError, match="cannot change ema_decay"):
        resume_config(tmp_path / "run", {"ema_decay": 0.9})


def test_recipe_fields_are_cli_flags_and_not_runtime_fields() -> None:
    from csnet.cli.train import _overrides

    args = build_parser().parse_args(["train", "--data", "x", "--ema-decay", "0.999", "--augment-recipe", "strong"])
    config = TrainConfig().replace(**_overrides(args))
    assert config.ema_decay == 0.999 and config.augment_recipe == "strong"
    assert TrainConfig().ema_decay is None and TrainConfig().augment_recipe == "release"
    assert not {"ema_decay", "augment_recipe"} & RUNTIME_FIELDS
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--augment-recipe", "heavy"])
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="ema_decay"):
            TrainConfig(ema_decay=bad)
