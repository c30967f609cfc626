"""The training loop: BCE (+ IoU) (+ DWD), Adam, MultiStepLR or warm-up + cosine, validation, atomic checkpoints, exact resume, DDP.

A run lives in one folder::

    RUN_DIR/config.json        the resolved TrainConfig
    RUN_DIR/command.txt        the command line that started it (and each resume)
    RUN_DIR/split.json         the held-out split (with val_fraction)
    RUN_DIR/last_state.pt      everything needed to continue (weights_only-loadable, see checkpoint.py)
    RUN_DIR/last.safetensors   the latest model, a plain csnet model file
    RUN_DIR/best.safetensors   the model with the best validation max F
    RUN_DIR/metrics.csv        one row per epoch

With ``ema_decay`` the two model files hold the EMA of the weights (their metadata says ``weights: ema``),
and validation scores that average; the state file keeps both the trained and the averaged weights.
    RUN_DIR/tb/                TensorBoard events (when tensorboard is installed)

Exact resume: the shuffle and the augmentation are functions of ``(seed, epoch, index)``, and the state file
holds the model (BN statistics included), optimizer, scheduler, grad scaler and RNG states, so on the CPU a
run resumed after epoch k ends bit-identical to an uninterrupted one. With ``checkpoint_every`` the state is
also written inside an epoch, with the sampler position and the epoch's running sums, and a resume continues
from that step.

Kill safety: ``last_state.pt`` is the one commit point. A checkpoint writes it first (atomically), then
derives ``last.safetensors``, ``best.safetensors`` and ``metrics.csv`` from what it holds; a resume writes
these three again from the state and deletes temporaries a killed write left, so whenever the process dies,
the resumed run ends with the same files, bit for bit, as an uninterrupted one. Until then a killed run's
derived files are at most one checkpoint behind its state, never ahead of it or half-written.
"""
from __future__ import annotations

import csv
import io
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from csnet.channels.dwd import DynamicWeightDecay
from csnet.io.atomic import atomic_write_text, remove_stale_temporaries
from csnet.models import CSNet, ChannelConfig, create_model, load_model, save_model
from csnet.models.weights import PRETRAINED
from csnet.train import checkpoint as ckpt
from csnet.train.config import RUNTIME_FIELDS, ConfigError, TrainConfig
from csnet.train.data import SPLIT_FILE, RunData, build_data, start_epoch, train_batches
from csnet.train.distributed import DistInfo, all_reduce_sum, barrier, init_distributed, shutdown
from csnet.train.optim import lr_scheduler, release_init_
from csnet.train.step import build_train_step

__all__ = ["Trainer", "TrainResult", "TrainingError", "DivergedError", "train", "resume_config",
           "validate", "ema_model", "CONFIG_FILE", "METRICS_FILE"]

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
COMMAND_FILE = "command.txt"
LAST_MODEL = "last.safetensors"
BEST_MODEL = "best.safetensors"
#: Every file the trainer writes atomically in the run folder (whose killed writes leave temporaries).
RUN_FILES = (CONFIG_FILE, COMMAND_FILE, SPLIT_FILE, ckpt.STATE_FILE, LAST_MODEL, BEST_MODEL, METRICS_FILE)
METRIC_COLUMNS = ("epoch", "lr", "loss", "bce", "dwd", "images_per_s", "epoch_time_s", "val_maxF", "val_MAE",
                  "best_maxF")


class TrainingError(RuntimeError):
    """A run that cannot start or continue; the message is one line for the user."""


class DivergedError(TrainingError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    """What a finished run left."""

    run_dir: Path
    epochs: int
    best: Optional[dict[str, float]] = None
    history: list[dict[str, Any]] = field(default_factory=list)


def resume_config(run_dir: Union[str, os.PathLike], overrides: Optional[dict[str, Any]] = None) -> TrainConfig:
    """The config of ``run_dir`` with ``overrides``; only runtime fields (e.g. ``epochs``, ``workers``) may
    change, anything else would make the resumed run differ from an uninterrupted one."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise TrainingError(f"{run_dir}: not a training run folder (no {CONFIG_FILE})")
    try:
        saved = TrainConfig.load(path)
    except ConfigError as error:
        raise TrainingError(str(error)) from None
    changes = {k: v for k, v in (overrides or {}).items() if v is not None}
    try:
        candidate = saved.replace(**changes)
    except (ConfigError, TypeError) as error:
        raise TrainingError(str(error)) from None
    changed = sorted(k for k in changes if getattr(candidate, k) != getattr(saved, k) and k not in RUNTIME_FIELDS)
    if changed:
        raise TrainingError(f"cannot change {', '.join(changed)} when resuming {run_dir} (only "
                            f"{', '.join(sorted(RUNTIME_FIELDS))} may change)")
    return candidate


def _amp_dtype(mode: str, device: torch.device) -> Optional[torch.dtype]:
    if mode == "off":
        return None
    if mode == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return None
    if mode == "fp16":
        if device.type != "cuda":
            raise TrainingError("amp fp16 needs a CUDA device (use bf16 or off on the CPU)")
        return torch.float16
    return torch.bfloat16


def ema_model(model: nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of ``model``'s parameters *and* buffers (BN running statistics: the
    averaged weights need statistics that match them), updated by ``update_parameters(model)``; its first
    update copies the model, each later one is ``ema = decay * ema + (1 - decay) * model``."""
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def validate(model: nn.Module, dataset, device: torch.device, batch_size: int = 16, runtime: str = "auto"
             ) -> dict[str, float]:
    """Max F and MAE of ``model`` on ``dataset`` (a non-augmented :class:`SaliencyDataset`).

    The network runs on the runtime ``csnet predict`` would pick (:func:`csnet.infer.runtimes.create_runtime`,
    float32, built from the model as it is now), and the logits become uint8 maps by the predictor's
    postprocessing, so the figures are ``csnet evaluate``'s at the validation resolution: the image resized
    (bilinear, no antialiasing) to the dataset's size and ImageNet-normalized (from the dataset's cache, so
    rounded to uint8 once after resizing), the map scored against the mask resized the same way (binarized at
    > 128 by the metrics). Scoring at the original resolution is ``csnet evaluate``'s job.
    """
    from csnet.infer.predictor import postprocess_logits
    from csnet.infer.runtimes import create_runtime
    from csnet.metrics import MAE, FMeasure

    was_training = model.training
    run = create_runtime(runtime, model.eval(), device=str(device))
    fmeasure, mae = FMeasure(), MAE()
    try:
        for start in range(0, len(dataset), batch_size):
            items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            logits = run(torch.stack([image for image, _ in items]).numpy())
            gts = (torch.stack([mask for _, mask in items]) * 255.0).round().to(torch.uint8).numpy()
            for index, gt in enumerate(gts[:, 0]):
                pred = postprocess_logits(logits[index, 0], *gt.shape)
                fmeasure.step(pred, gt)
                mae.step(pred, gt)
    finally:
        model.train(was_training)
    return {"maxF": float(fmeasure.get_results()["maxF"]), "MAE": float(mae.get_results()["MAE"]),
            "n": len(dataset)}


class Trainer:
    """One training run (see the module docstring for what it writes).

    Args:
        config: the recipe.
        run_dir: the run folder; a new run refuses a folder that already holds a training state.
        resume: continue the run in ``run_dir`` from its ``last_state.pt``.
        command: the command line, appended to ``command.txt``.
        show_progress: a tqdm bar on rank 0 (the CLI turns it on; library use stays quiet).
    """

    def __init__(self, config: TrainConfig, run_dir: Union[str, os.PathLike], *, resume: bool = False,
                 command: Optional[str] = None, show_progress: bool = False) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.command = command
        self.show_progress = show_progress
        self.info = DistInfo()
        self.device = torch.device("cpu")
        self.epoch = 0  # epochs completed
        self.best: Optional[dict[str, float]] = None
        self.history: list[dict[str, Any]] = []
        # Where a mid-epoch state left epoch ``self.epoch + 1`` (see _train_epoch); None at an epoch boundary.
        self._progress: Optional[dict[str, Any]] = None
        self._compile_timed = False
        self._writer = None
        self.ema: Optional[AveragedModel] = None  # with ema_decay, on rank 0 (which validates and saves)

    # -- setup ------------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Join DDP (if launched by torchrun), load data, build model, optimizer and scheduler, resume."""
        cfg = self.config
        try:
            self.info, self.device = init_distributed(cfg.device)
        except RuntimeError as error:
            raise TrainingError(str(error)) from None
        state_path = self.run_dir / ckpt.STATE_FILE
        if not self.resume and state_path.exists():
            raise TrainingError(f"{self.run_dir} already holds a training run; resume it with --resume "
                                f"{self.run_dir} or choose another output folder")
        if cfg.sync_bn and self.device.type != "cuda":
            raise TrainingError("--sync-bn needs CUDA (SyncBatchNorm has no CPU implementation)")
        if cfg.gpu_augment and self.device.type != "cuda":
            logger.warning("--gpu-augment ignored: the device is %s", self.device)
        self.amp_dtype = _amp_dtype(cfg.amp, self.device)
        if self.device.type == "cpu" and self.amp_dtype == torch.bfloat16 and cfg.channels_last:
            # oneDNN's bf16 weight gradient for NHWC convolutions (torch 2.13's oneDNN 3.12) returns NaN or
            # crashes on CPUs with AVX512-BF16 for CSNet's narrow dilated convs; its forward is right, so only
            # training is refused (docs/TRAINING.md, "bf16 and channels_last on the CPU").
            raise TrainingError("--channels-last with --amp bf16 is refused on the CPU: oneDNN's bf16 NHWC weight "
                                "gradient is wrong here (NaN or a crash); drop --channels-last (NCHW is as fast)")
        if self.info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            for name in RUN_FILES:
                for stale in remove_stale_temporaries(self.run_dir / name):
                    logger.info("removed %s, left by an interrupted write", stale)
            self._write_run_files()
        barrier(self.info)

        try:
            state = ckpt.load_state(state_path) if self.resume else None
        except ckpt.CheckpointError as error:
            raise TrainingError(str(error)) from None
        self.data: RunData = build_data(cfg, self.run_dir, self.info, self.device, write_split=not self.resume)
        if len(self.data.train) < 2:
            raise TrainingError("need at least 2 training images")
        self._build_model(state)
        self._build_optimizer()
        if state is not None:
            try:
                self._load_state(state)
            except (KeyError, ValueError, TypeError, RuntimeError) as error:  # well-formed, but not this run's
                first = str(error).strip().splitlines()
                raise TrainingError(f"{state_path}: cannot resume from this state "
                                    f"({type(error).__name__}: {first[0] if first else error})") from None
        self.batches = train_batches(self.data, cfg.batch_size, self.device)
        if self.info.is_main and cfg.tensorboard:
            self._open_tensorboard()

    def _write_run_files(self) -> None:
        atomic_write_text(self.run_dir / CONFIG_FILE, self.config.to_json())
        if self.command:
            previous = (self.run_dir / COMMAND_FILE).read_text() if (self.run_dir / COMMAND_FILE).exists() else ""
            atomic_write_text(self.run_dir / COMMAND_FILE, previous + self.command + "\n")

    def _build_model(self, state: Optional[dict[str, Any]]) -> None:
        cfg = self.config
        torch.manual_seed(cfg.seed)
        if state is not None:
            try:
                model_config = ChannelConfig.from_json(state["model_config"])
            except ValueError as error:
                raise TrainingError(f"{self.run_dir / ckpt.STATE_FILE}: {error}") from None
            model: CSNet = CSNet(model_config)
        elif cfg.init:
            try:
                model = (create_model(cfg.init, pretrained=True) if cfg.init in PRETRAINED and not Path(cfg.init).exists()
                         else load_model(cfg.init))
            except (ValueError, OSError) as error:
                raise TrainingError(str(error)) from None
            logger.info("fine-tuning %s (%s, %d parameters)", cfg.init, model.config.name,
                        sum(p.numel() for p in model.parameters()))
        else:
            try:
                model = create_model(cfg.model)
            except (KeyError, ValueError) as error:
                raise TrainingError(f"model {cfg.model!r}: {error}") from None
            if cfg.release_param_scaling:
                release_init_(model)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        model.train().to(self.device, memory_format=self.memory_format)
        if cfg.ema_decay is not None and self.info.is_main:
            # Copied before SyncBN and compile change the model: the average is a plain eager CSNet.
            self.ema = ema_model(model, cfg.ema_decay)
            logger.info("EMA of the weights (decay %g): validation and the saved models use it", cfg.ema_decay)
        if cfg.sync_bn and self.info.enabled:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        if cfg.compile == "norm-act":
            from csnet.train.compile import compile_norm_act

            blocks = compile_norm_act(model)  # compiled at the first step, timed there
            logger.info("compile norm-act: %d BatchNorm + PReLU blocks run as one compiled region", blocks)
        self.model = model
        self.dwd = (DynamicWeightDecay(model, cfg.dwd_strength, scale_weights=cfg.dwd_scale_weights)
                    if cfg.weight_decay_mode == "dwd" else None)
        if self.info.enabled:
            from torch.nn.parallel import DistributedDataParallel

            self.ddp: nn.Module = DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        else:
            self.ddp = model

    def _build_optimizer(self) -> None:
        cfg = self.config
        self.train_step = build_train_step(self.ddp, self.model, cfg, self.amp_dtype, self.dwd)
        self.optimizer, self.scaler = self.train_step.optimizer, self.train_step.scaler
        # the loader keeps a short last batch, so an epoch is ceil(items / batch) steps
        steps_per_epoch = -(-self.data.sampler.epoch_length() // cfg.batch_size)
        self.scheduler = lr_scheduler(self.optimizer, cfg, steps_per_epoch)
        self._lr_per_iteration = cfg.lr_schedule_unit == "iteration"
        groups = self.optimizer.param_groups
        for group in groups:
            logger.debug("param group %s: %d tensors, lr %g, weight decay %g, eps %g", group["name"],
                         len(group["params"]), group["lr"], group["weight_decay"], group["eps"])

    def _load_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"], strict=True)
        if self.ema is not None:
            if not state.get("ema"):
                raise ValueError("the state has no EMA weights (was it written with ema_decay off?)")
            self.ema.load_state_dict(state["ema"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        ckpt.load_scheduler_state(self.scheduler, state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        ckpt.set_rng_state(state["rng"])
        self.epoch = int(state["epoch"])
        self.best = state.get("best") or None
        self.history = [dict(row) for row in state.get("history", [])]
        self._progress = state.get("progress") or None
        where = f", step {self._progress['step']} of epoch {self.epoch + 1}" if self._progress else ""
        logger.info("resuming %s after epoch %d of %d%s", self.run_dir, self.epoch, self.config.epochs, where)
        if self.info.is_main:
            # The files derived from the state may be one checkpoint behind it (a kill between the writes):
            # write them again from the state, so they are the files an uninterrupted run has at this point.
            self._write_derived(best=bool(self.best) and int(self.best["epoch"]) == self.epoch
                                and self._progress is None)

    def _open_tensorboard(self) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            logger.info("tensorboard is not installed (pip install 'csnet[train]'): metrics go to %s only",
                        METRICS_FILE)
            return
        self._writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=self.epoch + 1)

    # -- loop -------------------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        """Train until ``config.epochs`` (from the resumed epoch), validating and checkpointing."""
        cfg = self.config
        try:
            while self.epoch < cfg.epochs:
                epoch = self.epoch + 1
                stats = self._train_epoch(epoch)
                if not self._lr_per_iteration:
                    self.scheduler.step()
                row = {"epoch": epoch, **stats}
                improved = False
                if self.info.is_main:
                    if self.data.val is not None and (epoch % cfg.val_every == 0 or epoch == cfg.epochs):
                        scores = validate(self._served_model(), self.data.val, self.device, cfg.batch_size)
                        row["val_maxF"], row["val_MAE"] = scores["maxF"], scores["MAE"]
                        if self.best is None or scores["maxF"] > self.best["maxF"]:
                            self.best = {"epoch": epoch, "maxF": scores["maxF"], "MAE": scores["MAE"]}
                            improved = True
                    row["best_maxF"] = self.best["maxF"] if self.best else None
                self.epoch = epoch
                self.history.append(row)
                if self.info.is_main:
                    self._checkpoint(best=improved)
                    self._log_epoch(row)
                barrier(self.info)
        finally:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        return TrainResult(self.run_dir, self.epoch, self.best, self.history)

    def _served_model(self) -> nn.Module:
        """The weights validation scores and the run's model files hold: the EMA when on."""
        return self.ema.module if self.ema is not None else self.model

    def _current_lr(self) -> float:
        for group in self.optimizer.param_groups:
            if group.get("name") != "x100":
                return float(group["lr"])
        return float(self.optimizer.param_groups[0]["lr"]) / 100.0

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        cfg = self.config
        self.ddp.train()
        # A state written mid-epoch carries the steps done and the epoch's running sums; otherwise start at 0.
        progress, self._progress = self._progress or {}, None
        done = int(progress.get("step", 0))
        start_epoch(self.data, epoch, start=done * cfg.batch_size)
        # the lr the epoch's first step ran at (a schedule stepped per iteration moves on within the epoch)
        lr = float(progress.get("lr", self._current_lr()))
        sums = (progress["sums"].to(self.device, torch.float64) if progress
                else torch.zeros(3, dtype=torch.float64, device=self.device))  # loss, bce, dwd
        seen, checked_steps = int(progress.get("seen", 0)), int(progress.get("checked_steps", 0))
        earlier = float(progress.get("elapsed_s", 0.0))  # time spent on this epoch before the resume
        steps = done + len(self.batches)
        bar = None
        if self.show_progress and self.info.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=steps, initial=done, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch",
                       dynamic_ncols=True, leave=False)
        start = time.perf_counter()
        mark_time, mark_seen = start, seen
        try:
            for step, (images, masks) in enumerate(self.batches, start=done + 1):
                loss, bce, reg = self.train_step(images, masks)
                if self._lr_per_iteration:
                    self.scheduler.step()
                if self.ema is not None:
                    self.ema.update_parameters(self.model)
                if step == done + 1 and cfg.compile != "off" and not self._compile_timed:
                    self._compile_timed = True
                    loss.item()  # the one sync that makes the first step's time (compile included) honest
                    logger.info("first step with compile %s: %.1f s", cfg.compile, time.perf_counter() - start)
                sums += torch.stack([loss, bce, reg]).double()
                seen += images.shape[0]
                if step % cfg.log_every == 0 or step == steps:
                    # One host sync every log_every steps, and a collective so all ranks stop together.
                    totals = all_reduce_sum(sums.clone(), self.info) / self.info.world_size
                    mean_loss = float(totals[0]) / step
                    if not math.isfinite(mean_loss):
                        raise DivergedError(self._diverged_message(epoch, step, mean_loss))
                    checked_steps = step
                    now = time.perf_counter()  # the speed since the last check: a compile or a pause ages out
                    rate = (seen - mark_seen) * self.info.world_size / max(now - mark_time, 1e-9)
                    mark_time, mark_seen = now, seen
                    if bar is not None:
                        bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{self._current_lr():.1e}", img_s=f"{rate:.1f}",
                                        refresh=False)
                        bar.update(step - bar.n)
                    elif self.info.is_main:
                        logger.info("epoch %d step %d/%d: loss %.4f, lr %.1e, %.2f images/s", epoch, step, steps,
                                    mean_loss, self._current_lr(), rate)
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < steps:
                    self._checkpoint_mid_epoch(epoch, step, sums, seen, checked_steps,
                                               earlier + time.perf_counter() - start, lr)
        finally:
            if bar is not None:
                bar.close()
        elapsed = earlier + time.perf_counter() - start
        totals = all_reduce_sum(sums.clone(), self.info) / self.info.world_size
        steps = max(checked_steps, 1)
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            raise DivergedError(self._diverged_message(epoch, steps, float("nan"), "weights"))
        images_total = seen * self.info.world_size
        return {"lr": lr, "loss": float(totals[0]) / steps, "bce": float(totals[1]) / steps,
                "dwd": float(totals[2]) / steps, "images_per_s": images_total / max(elapsed, 1e-9),
                "epoch_time_s": elapsed}

    def _checkpoint_mid_epoch(self, epoch: int, step: int, sums: torch.Tensor, seen: int, checked_steps: int,
                              elapsed_s: float, lr: float) -> None:
        """Commit the state after ``step`` steps of ``epoch`` with what the rest of the epoch needs."""
        # Under DDP every rank resumes from the mean of the ranks' sums, so the epoch's all-reduced mean
        # comes out the same; the collective also keeps the ranks in step.
        mean_sums = all_reduce_sum(sums.clone(), self.info) / self.info.world_size
        # Never commit a diverged state: the loss is otherwise checked only every log_every steps.
        if not torch.isfinite(mean_sums).all() or not all(torch.isfinite(p).all() for p in self.model.parameters()):
            raise DivergedError(self._diverged_message(epoch, step, float(mean_sums[0]) / step))
        if self.info.is_main:
            self._progress = {"step": step, "sums": mean_sums.cpu(), "seen": seen,
                              "checked_steps": checked_steps, "elapsed_s": elapsed_s, "lr": lr}
            try:
                self._checkpoint()
            finally:
                self._progress = None
        barrier(self.info)

    def _diverged_message(self, epoch: int, step: int, value: float, what: str = "loss") -> str:
        kept = (f"the last good checkpoint {self.run_dir / ckpt.STATE_FILE} (epoch {self.epoch}) is kept"
                if self.epoch else "no checkpoint was written")
        return (f"training diverged: the {what} became {value} at epoch {epoch}, step {step} "
                f"(lower --lr or try --amp off); {kept}")

    # -- outputs ----------------------------------------------------------------------------------------
    def _save_model(self, name: str, epoch: int, row: Optional[dict[str, Any]], step: int = 0) -> None:
        meta = {"trained_epochs": str(epoch), "train_config": self.config.to_json()}
        if step:
            meta["steps_into_next_epoch"] = str(step)
        if row and row.get("val_maxF") is not None:
            meta["val_maxF"] = f"{row['val_maxF']:.6f}"
            meta["val_MAE"] = f"{row['val_MAE']:.6f}"
        meta["weights"] = f"ema (decay {self.config.ema_decay:g})" if self.ema is not None else "trained"
        save_model(self._served_model(), self.run_dir / name, metadata=meta)

    def _checkpoint(self, best: bool = False) -> None:
        """Commit the state (the one file a resume reads), then derive the other files from it."""
        state = {
            "epoch": self.epoch,
            "progress": self._progress or {},
            "model_config": self.model.config.to_json(),
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "ema": {k: v.detach().cpu() for k, v in self.ema.state_dict().items()} if self.ema is not None else {},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": ckpt.scheduler_state(self.scheduler),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "rng": ckpt.rng_state(),
            "best": self.best or {},
            "history": [{k: v for k, v in r.items() if v is not None} for r in self.history],
            "config": self.config.to_json(),
        }
        ckpt.save_state(self.run_dir / ckpt.STATE_FILE, state)
        self._write_derived(best=best)

    def _write_derived(self, best: bool) -> None:
        """``last.safetensors`` (the state's model), ``best.safetensors`` when ``best`` (the state's model is the
        best one) and ``metrics.csv`` (the state's history), each atomically."""
        row = self.history[-1] if self.history and self._progress is None else None
        step = int(self._progress["step"]) if self._progress else 0
        self._save_model(LAST_MODEL, self.epoch, row, step=step)
        if best:
            self._save_model(BEST_MODEL, self.epoch, self.history[-1])
        self._write_metrics()

    def _write_metrics(self) -> None:
        """``metrics.csv`` as a function of the history alone: one row per completed epoch, nothing else."""
        if not self.history:
            return
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in self.history:
            writer.writerow({k: ("" if row.get(k) is None else (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k]))
                             for k in METRIC_COLUMNS})
        atomic_write_text(self.run_dir / METRICS_FILE, buffer.getvalue())

    def _log_epoch(self, row: dict[str, Any]) -> None:
        val = (f" | val maxF {row['val_maxF']:.4f} MAE {row['val_MAE']:.4f} (best {row['best_maxF']:.4f})"
               if row.get("val_maxF") is not None else "")
        # The DWD term is printed apart: early in a run it is thousands of times the task loss and would hide it.
        dwd = f" | dwd term {row['dwd']:.4g}" if self.dwd is not None else ""
        logger.info("epoch %d/%d task loss %.4f (bce %.4f)%s lr %.2e %.1f img/s%s", row["epoch"],
                    self.config.epochs, row["loss"] - row["dwd"], row["bce"], dwd, row["lr"], row["images_per_s"], val)
        if self._writer is not None:
            for key in ("loss", "bce", "dwd", "lr", "images_per_s", "val_maxF", "val_MAE"):
                if row.get(key) is not None:
                    self._writer.add_scalar(f"{'val' if key.startswith('val') else 'train'}/{key.removeprefix('val_')}",
                                            row[key], row["epoch"])
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        shutdown(self.info)


def train(config: TrainConfig, run_dir: Union[str, os.PathLike], *, resume: bool = False,
          command: Optional[str] = None, show_progress: bool = False) -> TrainResult:
    """Run (or resume) a training run to completion; see :class:`Trainer`."""
    trainer = Trainer(config, run_dir, resume=resume, command=command, show_progress=show_progress)
    try:
        trainer.setup()
        return trainer.fit()
    finally:
        trainer.close()
