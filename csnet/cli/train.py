"""``csnet train``: train (or fine-tune, or resume) a model on SOD datasets.

Every field of :class:`csnet.train.TrainConfig` is an option (``weight_decay_mode`` -> ``--weight-decay-mode``);
``--config FILE`` supplies the base values and options override them. Under ``torchrun --nproc-per-node N``
the same command trains with DDP.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
import time
from pathlib import Path

from csnet.cli.main import CLIError

_HELP = {
    "model": "registered model to train from scratch (default csnet_x2)",
    "init": "fine-tune from this .safetensors model file (its architecture, e.g. a pruned model)",
    "data": "training dataset folder(s) or list file(s), comma-separated",
    "val": "validation dataset folder(s), comma-separated",
    "val_fraction": "hold out this share of --data for validation (deterministic split, saved in RUN_DIR/split.json)",
    "split_seed": "seed of the held-out split",
    "size": "training input side (multiple of 16; release 224)",
    "val_size": "validation input side (default: --size)",
    "epochs": "epochs (release 300)",
    "batch_size": "batch size per process (release 24)",
    "lr": "Adam learning rate (release 1e-4)",
    "betas": "Adam betas, e.g. 0.9,0.99",
    "eps": "Adam eps",
    "weight_decay": "L2 weight decay (release 5e-3)",
    "weight_decay_mode": "dwd: BCE + DWD on ILBlock BN weights (release); standard: plain L2 on all; none",
    "dwd_strength": "factor on the DWD term (release 3.0)",
    "dwd_scale_weights": "DWD weight per scale, comma-separated (last repeats)",
    "release_param_scaling": "emulate the release's x100 conv parametrization for Adam (default on)",
    "milestones": "MultiStepLR epochs, comma-separated (release 200,250)",
    "lr_gamma": "MultiStepLR factor",
    "val_every": "validate every N epochs",
    "seed": "seed of init, shuffling and augmentation",
    "augment": "the release's crop/flip augmentation (default on)",
    "augment_recipe": "release (crop/flip), strong (also rotation +-15 deg, zoom 0.8-1.25x, colour jitter) or "
                      "copy-paste (also, on half the samples, another ground-truth pair's object pasted at 0.5-1x)",
    "ema_decay": "keep an EMA of the weights with this decay, e.g. 0.999 (validation and saved models use it)",
    "workers": "DataLoader worker processes",
    "cache": "decoded-sample cache: memory, disk (RUN_DIR/cache or --cache-dir), none",
    "cache_dir": "folder of the disk cache",
    "device": "auto, cpu or cuda",
    "amp": "mixed precision: auto (bf16 on CUDA), off, bf16, fp16",
    "gpu_augment": "hold the cached dataset on the GPU and augment there",
    "sync_bn": "SyncBatchNorm under DDP (CUDA)",
    "grad_clip": "clip the gradient norm to this value",
    "tensorboard": "write TensorBoard events to RUN_DIR/tb (default on)",
    "log_every": "steps between loss checks and progress updates",
    "checkpoint_every": "also checkpoint every N steps inside an epoch (a kill loses at most N steps; resume "
                        "continues from that step exactly)",
    "channels_last": "NHWC memory format for the model and batches (same maths, faster)",
    "compile": "off, or norm-act: torch.compile fuses each BatchNorm + PReLU pair (compiled once, at the first step)",
    "loss": "bce (release) or bce+iou",
    "lr_schedule": "step (MultiStepLR at --milestones, release) or cosine (warm-up, then cosine to 0)",
    "warmup_epochs": "epochs of linear warm-up for --lr-schedule cosine",
    "lr_schedule_unit": "epoch (release: the lr moves at epoch ends) or iteration (the same schedule followed at "
                        "every step)",
    "soft_masks": "keep gray masks soft instead of binarizing at 128 (on with --teacher)",
    "teacher": "distil: an ONNX saliency model (JSON card beside it) that labels --unlabeled first",
    "unlabeled": "folders of photos without masks, comma-separated, trained on with the teacher's soft maps",
    "label_dir": "folder of the teacher's maps (default RUN_DIR/labels; reused across runs)",
    "limit": "train on at most N pairs (quick trials)",
}


def _fields():
    from csnet.train.config import TrainConfig

    return dataclasses.fields(TrainConfig)


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Train a model on SOD datasets. Release recipe: csnet train --config configs/release.json "
        "--data DUTS-TR --val-fraction 0.02 --out runs/release")
    run = parser.add_argument_group("run")
    run.add_argument("-o", "--out", metavar="RUN_DIR", help="run folder (default runs/train-<date>-<time>)")
    run.add_argument("--config", metavar="FILE", help="JSON training config (e.g. configs/release.json)")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly where it stopped")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--threads", type=int, metavar="N",
                     help="CPU threads per process (default: one per core, or 1 when the machine is already busy: "
                          "load average >= cores)")
    from csnet.train.config import (AMP_MODES, AUGMENT_RECIPES, CACHE_MODES, COMPILE_MODES, DEVICES, LOSSES,
                                    LR_SCHEDULE_UNITS, LR_SCHEDULES, WEIGHT_DECAY_MODES,
                                    TrainConfig)

    choices = {"weight_decay_mode": WEIGHT_DECAY_MODES, "cache": CACHE_MODES, "device": DEVICES, "amp": AMP_MODES,
               "loss": LOSSES, "lr_schedule": LR_SCHEDULES,
               "lr_schedule_unit": LR_SCHEDULE_UNITS, "compile": COMPILE_MODES,
               "augment_recipe": AUGMENT_RECIPES}
    defaults = TrainConfig()
    recipe = parser.add_argument_group("recipe (each overrides --config; default: the release recipe)")
    for field in _fields():
        flag = "--" + field.name.replace("_", "-")
        kind = str(field.type)
        default = getattr(defaults, field.name)
        if isinstance(default, tuple):
            default = ",".join(map(str, default)) or "none"
        help_text = f"{_HELP.get(field.name, '')} [default {default}]"
        if kind == "bool":
            recipe.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction, default=None,
                                help=help_text)
        else:
            metavar = {"data": "DIR[,DIR]", "val": "DIR[,DIR]", "init": "MODEL.safetensors", "betas": "B1,B2",
                       "milestones": "E[,E]", "dwd_scale_weights": "W[,W]", "teacher": "TEACHER.onnx",
                       "unlabeled": "DIR[,DIR]", "label_dir": "DIR"}.get(field.name)
            recipe.add_argument(flag, dest=field.name, default=None, metavar=metavar, choices=choices.get(field.name),
                                help=help_text)


def _has_weights(name: str) -> bool:
    from csnet.models.weights import PRETRAINED

    return name in PRETRAINED


def _finished_epochs(run_dir: Path) -> int:
    """Epochs the run in ``run_dir`` has completed (its metrics.csv), 0 if unknown."""
    import csv

    path = run_dir / "metrics.csv"
    if not path.is_file():
        return 0
    epochs = [int(r["epoch"]) for r in csv.DictReader(path.read_text().splitlines()) if r.get("epoch", "").isdigit()]
    return max(epochs, default=0)


def _overrides(args: argparse.Namespace) -> dict:
    """CLI values given, as config values (comma lists split, paths made absolute, numbers parsed)."""
    values = {}
    for field in _fields():
        value = getattr(args, field.name, None)
        if value is None:
            continue
        kind = str(field.type)
        try:
            if "tuple" in kind:
                parts = [p.strip() for p in str(value).split(",") if p.strip()]
                if field.name in ("data", "val", "unlabeled"):
                    value = tuple(os.path.abspath(os.path.expanduser(p)) for p in parts)
                elif "float" in kind:
                    value = tuple(float(p) for p in parts)
                elif "int" in kind:
                    value = tuple(int(p) for p in parts)
                else:
                    value = tuple(parts)
            elif kind == "bool":
                pass
            elif "float" in kind:
                value = float(value)
            elif "int" in kind:
                value = int(value)
            elif field.name == "init" and not os.path.exists(os.path.expanduser(value)) and _has_weights(value):
                pass  # a registered name with bundled weights (e.g. csnet_pascal)
            elif field.name in ("init", "cache_dir", "teacher", "label_dir"):
                value = os.path.abspath(os.path.expanduser(value))
        except ValueError:
            raise CLIError(f"--{field.name.replace('_', '-')}: bad value {value!r}") from None
        values[field.name] = value
    return values


def _command_line(args: argparse.Namespace) -> str:
    """The options as parsed, as one shell line (what ``command.txt`` records; torchrun's own flags aside)."""
    words = ["csnet", "train"]
    for name in ("out", "config", "resume", "threads"):
        if getattr(args, name, None) is not None:
            words += [f"--{name}", str(getattr(args, name))]
    if args.no_progress:
        words.append("--no-progress")
    for field in _fields():
        value = getattr(args, field.name, None)
        flag = "--" + field.name.replace("_", "-")
        if isinstance(value, bool):
            words.append(flag if value else "--no-" + flag[2:])
        elif value is not None:
            words += [flag, str(value)]
    world = int(os.environ.get("WORLD_SIZE", "1"))
    prefix = f"# under torchrun, world size {world}\n" if world > 1 else ""
    return prefix + shlex.join(words)


def run(args: argparse.Namespace) -> int:
    from csnet.data import DatasetError
    from csnet.train import ConfigError, TrainConfig, TrainingError, resume_config, train
    from csnet.train.checkpoint import CheckpointError

    from csnet.cli.malloc import tune_malloc
    from csnet.cli.threads import set_cpu_threads

    overrides = _overrides(args)
    try:
        set_cpu_threads(args.threads)  # the policy csnet predict uses (csnet/cli/threads.py)
    except ValueError as error:
        raise CLIError(str(error)) from None
    tune_malloc()  # every step reuses the last step's buffers instead of faulting them in (csnet/cli/malloc.py)
    try:
        if args.resume:
            if args.config:
                raise CLIError("--resume takes the config of the run; do not give --config")
            if args.out and Path(args.out).resolve() != Path(args.resume).resolve():
                raise CLIError("--resume RUN_DIR continues in RUN_DIR; do not give another --out")
            run_dir = Path(args.resume)
            config = resume_config(run_dir, overrides)
            done = _finished_epochs(run_dir)
            if done >= config.epochs:
                print(f"{run_dir} already finished {done} of {config.epochs} epochs; nothing to do "
                      f"(--epochs N with N > {done} trains longer)")
                return 0
        else:
            base = TrainConfig.load(args.config) if args.config else TrainConfig()
            config = base.replace(**overrides)
            if not config.data:
                raise CLIError("no training data: give --data DIR[,DIR]")
            run_dir = Path(args.out) if args.out else Path("runs") / time.strftime("train-%Y%m%d-%H%M%S")
        command = _command_line(args)
        result = train(config, run_dir, resume=bool(args.resume), command=command,
                       show_progress=not args.no_progress and sys.stderr.isatty())
    except (ConfigError, TrainingError, DatasetError, CheckpointError) as error:
        raise CLIError(str(error)) from None
    if int(os.environ.get("RANK", "0")) == 0:
        best = (f"; best val max F {result.best['maxF']:.4f} (MAE {result.best['MAE']:.4f}) at epoch "
                f"{int(result.best['epoch'])}" if result.best else "")
        print(f"trained {result.epochs} epochs in {result.run_dir}{best}")
    return 0
