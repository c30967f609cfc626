"""The training step: today's fp32 step and the fast step (bf16, NHWC, compiled BatchNorm + PReLU, reused
buffers; in one process and on two DDP ranks) learn the same thing; the losses and the warm-up + cosine schedule do what they say."""
from __future__ import annotations

import math

import pytest
import torch

from csnet.bench.train_bench import FAST, FAST_DDP, TODAY, TrainMode, benchmark_train, synthetic_batch, train_config_for
from csnet.models import create_model
from csnet.train.compile import compile_norm_act
from csnet.train.losses import saliency_loss, soft_iou_loss
from csnet.train.optim import WarmupCosine, release_init_
from csnet.train.step import build_train_step
from csnet.train.trainer import _amp_dtype


def _losses(mode, steps: int, batch: int = 4, size: int = 32, rank: int = 0, port: int = 0) -> list[float]:
    """The loss of every step; with ``mode.ranks > 1`` this is rank ``rank`` of a gloo job, which trains on its
    share of each batch and returns the loss averaged over the ranks."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    config = train_config_for(mode, model="csnet_x1", size=size, weight_decay_mode="standard", lr=1e-3)
    config = config.replace(batch_size=batch)
    torch.manual_seed(0)
    model = create_model("csnet_x1")
    release_init_(model)
    model.train().to(memory_format=torch.channels_last if config.channels_last else torch.contiguous_format)
    if config.compile == "norm-act":
        compile_norm_act(model)
    module = model
    if mode.ranks > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=mode.ranks)
        module = torch.nn.parallel.DistributedDataParallel(model)
    step = build_train_step(module, model, config, _amp_dtype(config.amp, torch.device("cpu")))
    share = batch // mode.ranks
    losses = []
    for i in range(steps):
        images, masks = synthetic_batch(batch, size, seed=i % 16)
        loss = step(images[rank * share:(rank + 1) * share], masks[rank * share:(rank + 1) * share])[0]
        if mode.ranks > 1:
            dist.all_reduce(loss)
            loss = loss / mode.ranks
        losses.append(loss.item())
    if mode.ranks > 1:
        dist.destroy_process_group()
    return losses


def _ddp_losses(mode, steps: int) -> list[float]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from csnet.bench.train_bench import _free_port

    with ProcessPoolExecutor(mode.ranks, mp_context=multiprocessing.get_context("spawn")) as pool:
        port = _free_port()
        futures = [pool.submit(_losses, mode, steps, rank=rank, port=port) for rank in range(mode.ranks)]
        results = [future.result() for future in futures]
    assert results[0] == results[1]  # every rank saw the same averaged loss
    return results[0]


def _assert_curves_agree(reference: list[float], other: list[float], window: int = 20) -> None:
    for start in range(0, len(reference), window):
        a = sum(reference[start:start + window]) / window
        b = sum(other[start:start + window]) / window
        assert abs(a - b) <= 0.05 * a + 0.01, (start, a, b)
    assert sum(reference[-window:]) < 0.6 * sum(reference[:window])


STEPS = 240


@pytest.fixture(scope="module")
def today_losses() -> list[float]:
    """Today's fp32 step's loss curve, the reference both fast steps are held to (computed once: it is
    deterministic, and it is the costliest part of the two tests)."""
    threads = torch.get_num_threads()
    try:
        return _losses(TODAY, STEPS)
    finally:
        torch.set_num_threads(threads)


def test_fast_step_follows_the_fp32_step_over_hundreds_of_steps(today_losses, one_thread) -> None:
    # Same batches and batch size, so only the precision and the compiled kernels differ: bf16 rounds activations to
    # 8 mantissa bits (relative error ~4e-3), fp32 master weights keep the updates exact, so the two loss
    # curves must stay within a few percent of each other all the way, and both must learn.
    _assert_curves_agree(today_losses, _losses(FAST, STEPS))


def test_fast_step_on_two_ddp_ranks_follows_the_fp32_step_over_hundreds_of_steps(today_losses) -> None:
    # The recipe's 2-core step: each rank trains on half of every batch and DDP averages the gradients, so the
    # update is the one-process update except that BatchNorm's batch statistics are per rank.
    _assert_curves_agree(today_losses, _ddp_losses(FAST_DDP, STEPS))


def test_benchmark_rows_name_each_mode_each_measured_in_its_own_process(one_thread) -> None:
    rows = benchmark_train("csnet_x1", [TODAY, FAST], size=32, steps=2, warmup=1, threads=1)
    assert [r["mode"] for r in rows] == [TODAY.name, FAST.name]
    assert rows[0]["speedup"] == 1.0 and all(r["images_per_s"] > 0 for r in rows)
    assert rows[1]["batch_size"] == FAST.batch_size and rows[1]["amp"] == "bf16"
    assert rows[1]["compile"] == "norm-act" and rows[1]["tune_malloc"] and not rows[0]["tune_malloc"]
    assert all(r["threads"] == 1 for r in rows)


def test_a_ddp_mode_runs_its_ranks_with_the_threads_split_and_counts_every_rank_s_images() -> None:
    mode = TrainMode("tiny-ddp2", 2, False, "off", ranks=2)
    rows = benchmark_train("csnet_x1", [mode], size=32, steps=2, warmup=1, threads=2)
    (row,) = rows
    assert row["ranks"] == 2 and row["threads"] == 1
    assert row["images_per_s"] == pytest.approx(2 * 2 / (row["step_ms"] / 1000.0))
    with pytest.raises(ValueError, match="isolate"):
        benchmark_train("csnet_x1", [mode], size=32, steps=1, warmup=1, isolate=False)


@pytest.mark.parametrize("ranks", [1, 2])
def test_the_time_limit_stops_every_rank_at_the_same_step(ranks) -> None:
    # past max_seconds a mode stops after 3 timed steps; under DDP all ranks agree on when, or one would hang
    mode = TrainMode(f"tiny-r{ranks}", 2, False, "off", ranks=ranks)
    (row,) = benchmark_train("csnet_x1", [mode], size=32, steps=50, warmup=1, max_seconds=0.0, threads=ranks)
    assert row["steps"] == 3


def test_soft_iou_is_zero_for_a_perfect_map_and_bce_iou_adds_it() -> None:
    target = torch.zeros(2, 1, 8, 8)
    target[:, :, 2:6, 2:6] = 1.0
    perfect = (target * 2 - 1) * 50.0
    assert soft_iou_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    hedging = torch.zeros_like(target)  # p = 0.5 everywhere
    iou = soft_iou_loss(hedging, target).item()
    assert iou == pytest.approx(1 - (8 + 1) / (40 + 1), rel=1e-6)  # inter 16 * 0.5, union 64 * 0.5 + 16 - 8
    loss, bce = saliency_loss(hedging, target, "bce+iou")
    assert loss.item() == pytest.approx(bce.item() + iou, rel=1e-6)
    assert saliency_loss(hedging, target, "bce")[0].item() == pytest.approx(math.log(2), rel=1e-6)


def test_warmup_cosine_schedule() -> None:
    factor = WarmupCosine(epochs=10, warmup=2)
    assert [round(factor(e), 4) for e in (0, 1, 2)] == [round(1 / 3, 4), round(2 / 3, 4), 1.0]
    assert factor(6) == pytest.approx(0.5)
    assert factor(10) == pytest.approx(0.0, abs=1e-12)
