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

__all__ = ["TrainMode", "TODAY", "FAST", "FAST_DDP", "TRAIN_MODES", "train_config_for", "benchmark_train"]


@dataclass(frozen=True)
class TrainMode:
    """How a step runs: batch size, memory format, autocast precision, what is compiled and the malloc
    policy (the maths stays the same)."""

    name: str
    batch_size: int
    channels_last: bool
    amp: str  # a TrainConfig amp value: "off" or "bf16" on the CPU
    compile: str = "off"  # a TrainConfig compile value
    tune_malloc: bool = False  # csnet.cli.malloc.tune_malloc, as csnet train applies it
    ranks: int = 1  # DDP processes on this machine (gloo), the threads split between them; batch is per rank

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: The release's step as the trainer ran it before: fp32 NCHW, batch 24, glibc's default malloc.
TODAY = TrainMode("fp32-nchw", 24, False, "off")
#: The recipe's fast step in one process: bf16 autocast (fp32 master weights and loss), batch 8, BatchNorm +
#: PReLU compiled into one region, freed buffers reused (csnet train's malloc policy). NCHW: oneDNN's bf16
#: NHWC weight gradient is wrong on CPUs with AVX512-BF16 (NaN or a crash), so the trainer refuses that pair.
FAST = TrainMode("fast", 8, False, "bf16", "norm-act", True)
#: The same step under ``torchrun --nproc-per-node 2`` with one thread per rank, the recipe on a 2-core CPU:
#: CSNet's ops are too small to split well over threads (every op waits for the slower one), so two ranks of
#: one thread do more per second than one rank of two. The batch is per rank (16 in all).
FAST_DDP = dataclasses.replace(FAST, name="fast-ddp2", ranks=2)
TRAIN_MODES = {mode.name: mode for mode in (
    TODAY, FAST, FAST_DDP,
    # the steps from today's to the fast one, one change at a time
    TrainMode("fp32-malloc", 24, False, "off", tune_malloc=True),  # freed buffers reused
    TrainMode("bf16-b8", 8, False, "bf16", tune_malloc=True),  # + bf16 and batch 8; not compiled
    TrainMode("fast-b4", 4, False, "bf16", "norm-act", True),
    TrainMode("fast-b16", 16, False, "bf16", "norm-act", True),
    dataclasses.replace(FAST_DDP, name="fast-ddp2-b16", batch_size=16),
    TrainMode("fp32-nhwc", 24, True, "off", tune_malloc=True))}  # channels_last where it is correct: fp32


def train_config_for(mode: TrainMode, base: TrainConfig = TrainConfig(), **changes: Any) -> TrainConfig:
    """``base`` with ``mode``'s batch size, memory format and precision."""
    return base.replace(batch_size=mode.batch_size, channels_last=mode.channels_last, amp=mode.amp,
                        compile=mode.compile, **changes)


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
                    warmup: int = 2, max_seconds: Optional[float] = 120.0, base: TrainConfig = TrainConfig(),
                    threads: Optional[int] = None, isolate: bool = True) -> list[dict[str, Any]]:
    """One row per mode: median step time, images/s, first-step time (compile included) and the losses seen.

    Each mode trains a fresh copy of the same initial model (seed 0), so the rows differ only in the mode.
    With ``isolate`` (the default) each mode runs in a fresh process: the malloc policy is process-wide and
    compiled code is cached per process, so a row measured after another would not be that mode's own cost.
    """
    args = (model_name, size, steps, warmup, max_seconds, base.to_dict(), threads)
    if isolate:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        rows = []
        for mode in modes:  # a graceful shutdown per mode: the workers exit on their own, nothing is left behind
            with ProcessPoolExecutor(mode.ranks, mp_context=multiprocessing.get_context("spawn")) as pool:
                port = _free_port()
                futures = [pool.submit(_benchmark_mode, mode, *args, rank=rank, port=port)
                           for rank in range(mode.ranks)]
                rows.append([future.result() for future in futures][0])  # rank 0 speaks for the job
    else:
        if any(mode.ranks > 1 for mode in modes):
            raise ValueError("modes with several DDP ranks need isolate=True (one process per rank)")
        rows = [_benchmark_mode(mode, *args) for mode in modes]
    if rows:
        reference = rows[0]["images_per_s"]
        for row in rows:
            row["speedup"] = row["images_per_s"] / reference
    return rows


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _benchmark_mode(mode: TrainMode, model_name: str, size: int, steps: int, warmup: int,
                    max_seconds: Optional[float], base: dict[str, Any], threads: Optional[int], *,
                    rank: int = 0, port: Optional[int] = None) -> dict[str, Any]:
    """One mode's row, measured in this process (rank ``rank`` of ``mode.ranks`` under DDP)."""
    from csnet.models import create_model, load_model
    from csnet.train.compile import compile_norm_act
    from csnet.train.optim import release_init_
    from csnet.train.step import build_train_step
    from csnet.train.trainer import _amp_dtype

    if mode.ranks > 1:
        import torch.distributed as dist

        from csnet.cli.threads import usable_cores

        threads = max(1, (threads or usable_cores()) // mode.ranks)
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=mode.ranks)
    if threads is not None:
        torch.set_num_threads(threads)
    if mode.tune_malloc:
        from csnet.cli.malloc import tune_malloc

        tune_malloc()
    config = train_config_for(mode, TrainConfig.from_dict(base), model=model_name, size=size,
                              weight_decay_mode="standard")
    torch.manual_seed(0)
    if model_name.endswith(".safetensors"):
        model = load_model(model_name)
    else:
        model = create_model(model_name)
        release_init_(model)
    memory_format = torch.channels_last if mode.channels_last else torch.contiguous_format
    model.train().to(memory_format=memory_format)
    if mode.compile == "norm-act":
        compile_norm_act(model)
    module = model
    if mode.ranks > 1:
        from torch.nn.parallel import DistributedDataParallel

        module = DistributedDataParallel(model)  # as the trainer wraps it under torchrun
    step = build_train_step(module, model, config, _amp_dtype(mode.amp, torch.device("cpu")))
    images, masks = synthetic_batch(mode.batch_size, size, seed=rank)
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
        expired = max_seconds is not None and time.perf_counter() - begin > max_seconds and len(times) >= 3
        if mode.ranks > 1:  # every rank must stop at the same step, or the others wait in all-reduce
            flag = torch.tensor(float(expired))
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            expired = bool(flag.item())
        if expired:
            break
    median = statistics.median(times)
    if mode.ranks > 1:
        torch.distributed.destroy_process_group()
    return {"mode": mode.name, **mode.to_dict(), "model": model_name, "size": size, "steps": len(times),
            "threads": torch.get_num_threads(), "step_ms": median * 1000.0,
            "images_per_s": mode.ranks * mode.batch_size / median,
            "first_step_s": first_step_s, "loss_first": first, "loss_last": losses[-1]}


def format_train_rows(rows: Sequence[dict[str, Any]]) -> str:
    header = (f"{'mode':<15} {'ranks':>5} {'batch':>5} {'NHWC':>5} {'amp':>5} {'compile':>8} {'malloc':>6} "
              f"{'step ms':>9} {'img/s':>7} {'x':>5} {'first s':>8}")
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r['mode']:<15} {r['ranks']:>5} {r['batch_size']:>5} {str(r['channels_last']):>5} {r['amp']:>5} "
                     f"{r['compile']:>8} {'reuse' if r['tune_malloc'] else 'glibc':>6} {r['step_ms']:>9.1f} "
                     f"{r['images_per_s']:>7.2f} {r['speedup']:>5.2f} {r['first_step_s']:>8.1f}")
    return "\n".join(lines)
