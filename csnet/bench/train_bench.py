"""Training-step speed: today's step (fp32, NCHW, batch 24) beside the recipe's fast step, in one run.

Both run :class:`csnet.train.step.TrainStep`, the object the trainer runs, on the same synthetic batches
(normalized noise images, blob masks), so the images/s here are training's images/s without data loading.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch

from csnet.train.config import TrainConfig

__all__ = ["TrainMode", "TODAY", "FAST", "TRAIN_MODES", "train_config_for", "benchmark_train"]


@dataclass(frozen=True)
class TrainMode:
    """How a step runs: batch size, memory format and autocast precision (the maths stays the same)."""

    name: str
    batch_size: int
    channels_last: bool
    amp: str  # a TrainConfig amp value: "off" or "bf16" on the CPU

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: The release's step as the trainer ran it before: fp32 NCHW, batch 24.
TODAY = TrainMode("fp32-nchw", 24, False, "off")
#: The recipe's fast step on the CPU: NHWC + bf16 autocast (fp32 master weights and loss), a batch small
#: enough that the 224 px activations stay in cache (the 224 px step at batch 24 falls off a memory cliff).
FAST = TrainMode("bf16-nhwc", 8, True, "bf16")
TRAIN_MODES = {mode.name: mode for mode in (TODAY, FAST,
                                           TrainMode("bf16-nhwc-b4", 4, True, "bf16"),
                                           TrainMode("bf16-nhwc-b16", 16, True, "bf16"),
                                           TrainMode("fp32-nhwc", 24, True, "off"))}


def train_config_for(mode: TrainMode, base: TrainConfig = TrainConfig(), **changes: Any) -> TrainConfig:
    """``base`` with ``mode``'s batch size, memory format and precision."""
    return base.replace(batch_size=mode.batch_size, channels_last=mode.channels_last, amp=mode.amp, **changes)


def synthetic_batch(batch: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalized noise images and masks of one centred ellipse each (so the loss has something to learn)."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, size, size, generator=generator)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    radius = 0.3 + 0.4 * torch.rand(batch, 1, 1, generator=generator)
    masks = ((xs[None] ** 2 + (ys[None] / 0.7) ** 2) < radius ** 2).float()[:, None]
    images = images + 1.5 * masks  # the object is brighter: learnable from the image
    return images, masks


def benchmark_train(model_name: str, modes: Sequence[TrainMode], *, size: int = 224, steps: int = 10,
                    warmup: int = 2, max_seconds: Optional[float] = 120.0,
                    base: TrainConfig = TrainConfig()) -> list[dict[str, Any]]:
    """One row per mode: median step time, images/s, first-step time and the losses seen.

    Each mode trains a fresh copy of the same initial model (seed 0), so the rows differ only in the mode.
    """
    from csnet.models import create_model, load_model
    from csnet.train.optim import release_init_
    from csnet.train.step import build_train_step
    from csnet.train.trainer import _amp_dtype

    rows = []
    for mode in modes:
        config = train_config_for(mode, base, model=model_name, size=size, weight_decay_mode="standard")
        torch.manual_seed(0)
        if model_name.endswith(".safetensors"):
            model = load_model(model_name)
        else:
            model = create_model(model_name)
            release_init_(model)
        memory_format = torch.channels_last if mode.channels_last else torch.contiguous_format
        model.train().to(memory_format=memory_format)
        step = build_train_step(model, model, config, _amp_dtype(mode.amp, torch.device("cpu")))
        images, masks = synthetic_batch(mode.batch_size, size)
        start = time.perf_counter()
        first = step(images, masks)[0].item()
        first_step_s = time.perf_counter() - start
        for _ in range(max(0, warmup - 1)):
            step(images, masks)
        times, losses = [], []
        begin = time.perf_counter()
        for _ in range(steps):
            t0 = time.perf_counter()
            loss = step(images, masks)[0]
            losses.append(loss.item())  # the sync is inside the timed region, as the trainer's log is per step
            times.append(time.perf_counter() - t0)
            if max_seconds is not None and time.perf_counter() - begin > max_seconds and len(times) >= 3:
                break
        median = statistics.median(times)
        rows.append({"mode": mode.name, **mode.to_dict(), "model": model_name, "size": size, "steps": len(times),
                     "step_ms": median * 1000.0, "images_per_s": mode.batch_size / median,
                     "first_step_s": first_step_s, "loss_first": first, "loss_last": losses[-1]})
    if rows:
        reference = rows[0]["images_per_s"]
        for row in rows:
            row["speedup"] = row["images_per_s"] / reference
    return rows


def format_train_rows(rows: Sequence[dict[str, Any]]) -> str:
    header = f"{'mode':<16} {'batch':>5} {'NHWC':>5} {'amp':>5} {'step ms':>9} {'img/s':>7} {'x':>5} {'first s':>8}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r['mode']:<16} {r['batch_size']:>5} {str(r['channels_last']):>5} {r['amp']:>5} "
                     f"{r['step_ms']:>9.1f} {r['images_per_s']:>7.2f} {r['speedup']:>5.2f} {r['first_step_s']:>8.1f}")
    return "\n".join(lines)
