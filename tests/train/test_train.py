"""``csnet train`` end to end on tiny synthetic data: outputs, exact resume, NaN stop, fine-tune, DDP."""
from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from csnet.cli.main import build_parser, main
from csnet.models import create_model, load_model, read_metadata, save_model
from csnet.train import ConfigError, TrainConfig, Trainer, TrainingError, resume_config, train
from csnet.train.checkpoint import STATE_FILE, load_state
from csnet.train.optim import param_groups, release_scaled_convs

REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_config(data: Path, **changes) -> TrainConfig:
    base = TrainConfig(model="csnet_l_x1", data=(str(data),), size=32, epochs=2, batch_size=4, workers=0,
                       device="cpu", tensorboard=False, milestones=(2,), log_every=1)
    return base.replace(**changes)


# -- config --------------------------------------------------------------------------------------------------
def test_config_json_round_trip_and_validation(tmp_path: Path) -> None:
    config = TrainConfig(data=("a", "b"), betas=(0.8, 0.9), milestones=(3, 5), grad_clip=1.5)
    assert TrainConfig.from_json(config.to_json()) == config
    path = tmp_path / "c.json"
    path.write_text(config.to_json())
    assert TrainConfig.load(path) == config
    with pytest.raises(ConfigError, match="unknown"):
        TrainConfig.from_dict({"learning_rate": 1})
    with pytest.raises(ConfigError, match="size"):
        TrainConfig(size=30)
    with pytest.raises(ConfigError, match="weight_decay_mode"):
        TrainConfig.from_dict({"weight_decay_mode": "l1"})
    with pytest.raises(ConfigError, match="epochs"):
        TrainConfig.from_dict({"epochs": "ten"})


def test_release_config_is_the_release_recipe() -> None:
    config = TrainConfig.load(REPO / "configs" / "release.json")
    assert (config.model, config.size, config.epochs, config.batch_size) == ("csnet_x2", 224, 300, 24)
    assert (config.lr, config.betas, config.eps, config.weight_decay) == (1e-4, (0.9, 0.99), 1e-8, 5e-3)
    assert (config.milestones, config.lr_gamma) == ((200, 250), 0.1)
    assert (config.weight_decay_mode, config.dwd_strength, config.release_param_scaling) == ("dwd", 3.0, True)


def test_cli_overrides(tmp_path: Path) -> None:
    from csnet.cli.train import _overrides

    args = build_parser().parse_args([
        "train", "--config", str(REPO / "configs" / "release.json"), "--data", "x,y", "--epochs", "7",
        "--milestones", "4,6", "--weight-decay-mode", "standard", "--no-release-param-scaling", "--lr", "3e-4"])
    overrides = _overrides(args)
    config = TrainConfig.load(args.config).replace(**overrides)
    assert config.epochs == 7 and config.milestones == (4, 6) and config.lr == 3e-4
    assert config.weight_decay_mode == "standard" and config.release_param_scaling is False
    assert config.data == (os.path.abspath("x"), os.path.abspath("y"))
    assert config.batch_size == 24  # from the file


def test_release_param_groups_match_the_x100_parametrization() -> None:
    """Adam on w with (lr x100, wd / 1e4, eps / 100) == Adam on w_r = w / 100 used as 100 * w_r."""
    torch.manual_seed(0)
    model = create_model("csnet_l_x1")
    scaled = release_scaled_convs(model)
    assert scaled and all(c.groups == c.in_channels or c.dilation[0] > 1 or True for c in scaled)
    groups = {g["name"]: g for g in param_groups(model, lr=1e-4, weight_decay=5e-3, eps=1e-8)}
    assert groups["x100"]["lr"] == pytest.approx(1e-2) and groups["x100"]["weight_decay"] == pytest.approx(5e-7)
    assert groups["x100"]["eps"] == pytest.approx(1e-10)

    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    w = torch.randn(4, 1, 3, 3, dtype=torch.float64) * 3
    ours = nn.Parameter(w.clone())
    theirs = nn.Parameter(w.clone() / 100)
    opt_ours = torch.optim.Adam([ours], lr=1e-2, betas=(0.9, 0.99), eps=1e-10, weight_decay=5e-7)
    opt_theirs = torch.optim.Adam([theirs], lr=1e-4, betas=(0.9, 0.99), eps=1e-8, weight_decay=5e-3)
    for _ in range(5):
        for param, opt, gain in ((ours, opt_ours, 1.0), (theirs, opt_theirs, 100.0)):
            opt.zero_grad()
            torch.nn.functional.conv2d(x, param * gain, padding=1, groups=4).square().mean().backward()
            opt.step()
    torch.testing.assert_close(ours.detach(), theirs.detach() * 100, rtol=1e-9, atol=1e-12)


# -- runs ------------------------------------------------------------------------------------------------------
def test_cli_run_writes_checkpoints_and_metrics(tiny_data: Path, tiny_val: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    code = main(["train", "--data", str(tiny_data), "--val", str(tiny_val), "--model", "csnet_l_x1", "--size", "32",
                 "--epochs", "2", "--batch-size", "4", "--workers", "0", "--device", "cpu", "--no-progress",
                 "--out", str(run_dir)])
    assert code == 0
    for name in ("last.safetensors", "best.safetensors", STATE_FILE, "metrics.csv", "config.json", "command.txt",
                 "tb"):
        assert (run_dir / name).exists(), name
    assert (run_dir / "command.txt").read_text().startswith(f"csnet train --out {run_dir} ")
    rows = list(csv.DictReader((run_dir / "metrics.csv").read_text().splitlines()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert all(0.0 <= float(r["val_maxF"]) <= 1.0 and float(r["val_MAE"]) >= 0 and float(r["dwd"]) > 0 for r in rows)
    best = load_model(run_dir / "best.safetensors")
    assert best.config.name == create_model("csnet_l_x1").config.name
    saved = TrainConfig.load(run_dir / "config.json")
    assert saved.size == 32 and saved.val == (str(tiny_val),)
    state = load_state(run_dir / STATE_FILE)  # weights_only=True inside
    assert state["epoch"] == 2 and set(state["best"]) == {"epoch", "maxF", "MAE"}
    # a second start in the same folder is refused, with a one-line error
    assert main(["train", "--data", str(tiny_data), "--model", "csnet_l_x1", "--size", "32", "--epochs", "1",
                 "--out", str(run_dir), "--no-progress"]) == 1


def test_resume_is_bit_identical(tiny_data: Path, tmp_path: Path) -> None:
    config = tiny_config(tiny_data, epochs=4, milestones=(3,), val_fraction=0.25, val_every=2)
    full = train(config, tmp_path / "full")
    train(config.replace(epochs=2), tmp_path / "split")
    assert json.loads((tmp_path / "split" / "split.json").read_text())["val"]  # the held-out split is recorded
    resumed = train(resume_config(tmp_path / "split", {"epochs": 4}), tmp_path / "split", resume=True)
    assert full.epochs == resumed.epochs == 4
    a = load_state(tmp_path / "full" / STATE_FILE)
    b = load_state(tmp_path / "split" / STATE_FILE)
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(pa["exp_avg"], pb["exp_avg"]) and torch.equal(pa["exp_avg_sq"], pb["exp_avg_sq"])
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 4
    rows_a = (tmp_path / "full" / "metrics.csv").read_text().splitlines()
    rows_b = (tmp_path / "split" / "metrics.csv").read_text().splitlines()
    assert len(rows_a) == len(rows_b) == 5
    strip = lambda rows: [r.split(",")[:5] + r.split(",")[7:] for r in rows]  # drop the timing columns
    assert strip(rows_a) == strip(rows_b)
    with pytest.raises(TrainingError, match="cannot change lr"):
        resume_config(tmp_path / "split", {"lr": 1e-3})


def test_the_schedule_can_follow_every_iteration(tiny_data: Path, tmp_path: Path) -> None:
    # 8 pairs in batches of 4: 2 steps an epoch, so 1 warm-up epoch of 2 is 2 warm-up steps of 4
    config = tiny_config(tiny_data, lr=1e-3, lr_schedule="cosine", warmup_epochs=1, lr_schedule_unit="iteration")
    train(config, tmp_path / "run")
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").read_text().splitlines()))
    # each epoch's lr is the one its first step ran at: 1/3 of the peak (warm-up step 1 of 2), then the peak
    assert [float(r["lr"]) for r in rows] == pytest.approx([1e-3 / 3, 1e-3])
    state = load_state(tmp_path / "run" / STATE_FILE)
    assert state["scheduler"]["last_epoch"] == 4
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.0, abs=1e-12)  # annealed to zero
    with pytest.raises(ConfigError, match="lr_schedule_unit"):
        config.replace(lr_schedule_unit="batch")


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_data: Path, tmp_path: Path, monkeypatch,
                                                       capsys) -> None:
    import csnet.train.losses as losses_module  # where the training loss is computed

    real_bce = losses_module.F.binary_cross_entropy_with_logits
    calls = {"n": 0}

    class PoisonedF:
        def __getattr__(self, name):
            return getattr(torch.nn.functional, name)

        @staticmethod
        def binary_cross_entropy_with_logits(logits, target):
            calls["n"] += 1
            loss = real_bce(logits, target)
            return loss * float("nan") if calls["n"] > 2 else loss  # epoch 1 = 2 steps, then NaN

    monkeypatch.setattr(losses_module, "F", PoisonedF())
    run_dir = tmp_path / "nan"
    code = main(["train", "--data", str(tiny_data), "--model", "csnet_l_x1", "--size", "32", "--epochs", "3",
                 "--batch-size", "4", "--workers", "0", "--device", "cpu", "--no-progress", "--no-tensorboard",
                 "--log-every", "1", "--out", str(run_dir)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert "diverged" in err[-1] and "epoch 2" in err[-1] and "epoch 1" in err[-1]
    state = load_state(run_dir / STATE_FILE)
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    model = load_model(run_dir / "last.safetensors")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert len((run_dir / "metrics.csv").read_text().splitlines()) == 2


def test_fine_tune_trains_the_file_model(tiny_data: Path, tmp_path: Path) -> None:
    """--init: the architecture comes from the file and the optimizer holds that model's parameters."""
    from csnet.models import ChannelConfig
    from csnet.models.csnet import CSNet

    # A "pruned" model: csnet_l_x1 with one block's finer scale narrowed, an architecture no name registers.
    data = json.loads(create_model("csnet_l_x1").config.to_json())
    data["stages"][1][1]["out_channels"] = [4, 10]  # stage1 block1 narrowed, stage1 block2 follows
    data["stages"][1][2]["in_channels"] = [4, 10]
    data["name"] = "pruned_test"
    config = ChannelConfig.from_json(json.dumps(data))
    assert config != create_model("csnet_l_x1").config
    torch.manual_seed(5)
    source = CSNet(config)
    path = save_model(source, tmp_path / "pruned.safetensors")
    before = {k: v.clone() for k, v in load_model(path).state_dict().items()}

    trainer = Trainer(tiny_config(tiny_data, init=str(path), epochs=1, model="csnet_x2"), tmp_path / "ft")
    try:
        trainer.setup()
        model_params = {id(p) for p in trainer.model.parameters()}
        optimizer_params = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
        assert optimizer_params == model_params
        assert trainer.model.config == config
        trainer.fit()
    finally:
        trainer.close()
    after = load_model(tmp_path / "ft" / "last.safetensors")
    assert after.config == config
    changed = [k for k, v in after.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert len(changed) > len(before) // 2


@pytest.mark.slow
def test_ddp_two_processes_on_gloo(tiny_data: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "csnet.cli.main", "train",
               "--data", str(tiny_data), "--model", "csnet_l_x1", "--size", "32", "--epochs", "1",
               "--batch-size", "2", "--workers", "0", "--device", "cpu", "--val-fraction", "0.25",
               "--no-progress", "--no-tensorboard", "--out", str(run_dir)]
    # Own session: on a timeout the whole group (torchrun and its workers) is killed, not left orphaned.
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail("torchrun did not finish in 120 s")
    assert process.returncode == 0, stderr[-3000:]
    for name in ("last.safetensors", "best.safetensors", STATE_FILE, "metrics.csv"):
        assert (run_dir / name).exists(), name
    rows = list(csv.DictReader((run_dir / "metrics.csv").read_text().splitlines()))
    assert len(rows) == 1 and math.isfinite(float(rows[0]["loss"]))
    assert load_state(run_dir / STATE_FILE)["epoch"] == 1
    assert stdout.count("trained 1 epochs") == 1  # rank 0 only


def test_gpu_augment_batches_equal_the_loader_batches(tiny_data: Path, tmp_path: Path) -> None:
    """The --gpu-augment path (run here on the CPU) draws the same batches as the DataLoader path."""
    from csnet.train.data import _GpuBatches, build_data
    from csnet.train.distributed import DistInfo

    data = build_data(tiny_config(tiny_data), tmp_path, DistInfo(), torch.device("cpu"))
    on_device = _GpuBatches(data, 4, torch.device("cpu"))
    for epoch in (1, 2):
        data.sampler.set_epoch(epoch)
        for (img_a, mask_a), (img_b, mask_b) in zip(data.loader, on_device, strict=True):
            torch.testing.assert_close(img_a, img_b, rtol=0, atol=1e-5)
            torch.testing.assert_close(mask_a, mask_b, rtol=0, atol=1e-6)


def test_bf16_autocast_trains_on_the_cpu(tiny_data: Path, tmp_path: Path) -> None:
    """--amp bf16 runs the same loop under torch.autocast (CPU here; CUDA uses the same code): finite losses,
    float32 weights, and a model that differs from the float32 run but not by much."""
    config = tiny_config(tiny_data, epochs=1, amp="bf16", seed=3)
    train(config, tmp_path / "bf16")
    train(config.replace(amp="off"), tmp_path / "fp32")
    rows = list(csv.DictReader((tmp_path / "bf16" / "metrics.csv").read_text().splitlines()))
    assert math.isfinite(float(rows[0]["loss"])) and float(rows[0]["dwd"]) > 0
    bf16, fp32 = (load_model(tmp_path / run / "last.safetensors") for run in ("bf16", "fp32"))
    assert all(p.dtype == torch.float32 for p in bf16.parameters())
    diffs = [(a - b).abs().max().item() for a, b in zip(bf16.parameters(), fp32.parameters())]
    assert max(diffs) > 0  # autocast really ran in bfloat16
    assert max(diffs) < 0.1  # ...and followed the same path
    with pytest.raises(TrainingError, match="fp16 needs a CUDA"):
        train(config.replace(amp="fp16"), tmp_path / "fp16")
    # oneDNN's bf16 NHWC weight gradient is wrong on some CPUs: the pair is refused before anything is written
    with pytest.raises(TrainingError, match="channels-last with --amp bf16"):
        train(config.replace(channels_last=True), tmp_path / "bf16-nhwc")
    assert not (tmp_path / "bf16-nhwc" / STATE_FILE).exists()


def test_init_takes_a_registry_name_and_resume_of_a_finished_run_says_so(tiny_data: Path, tmp_path: Path,
                                                                          capsys) -> None:
    out = tmp_path / "ft"
    assert main(["train", "--out", str(out), "--init", "csnet_pascal", "--data", str(tiny_data), "--size", "32",
                 "--epochs", "1", "--batch-size", "4", "--workers", "0", "--no-tensorboard", "--no-progress"]) == 0
    assert read_metadata(out / "last.safetensors")["trained_epochs"] == "1"
    capsys.readouterr()
    assert main(["train", "--resume", str(out)]) == 0
    assert "already finished 1 of 1 epochs" in capsys.readouterr().out
