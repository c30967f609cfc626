"""``compile norm-act``: the compiled BatchNorm + PReLU computes what the eager modules compute (outputs,
running statistics, gradients), keeps the model's parameters and keys, and trains through ``csnet train``."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from csnet.models import create_model, load_model
from csnet.nn.goct import ScaleBNPReLU
from csnet.train import TrainConfig, train
from csnet.train.compile import CompiledScaleBNPReLU, compile_norm_act

pytestmark = pytest.mark.usefixtures("one_thread")


def _block(seed: int = 0) -> ScaleBNPReLU:
    torch.manual_seed(seed)
    block = ScaleBNPReLU((6, 0, 3))
    for bn in block.bns.values():  # away from the identity init, so a wrong formula shows
        nn.init.uniform_(bn.weight, 0.5, 1.5)
        nn.init.uniform_(bn.bias, -0.5, 0.5)
    for act in block.acts.values():
        nn.init.uniform_(act.weight, 0.05, 0.4)
    return block.train()


def test_compiled_block_equals_the_eager_block_forward_backward_and_running_stats() -> None:
    eager, fused = _block(), _block()
    assert compile_norm_act(fused) == 1 and type(fused) is CompiledScaleBNPReLU
    torch.manual_seed(1)
    for step in range(3):  # three steps: the running statistics accumulate the same way
        x = (torch.randn(4, 6, 10, 12) * 2 + 1, None, torch.randn(4, 3, 3, 4))
        xs_e = tuple(None if t is None else t.clone().requires_grad_() for t in x)
        xs_f = tuple(None if t is None else t.clone().requires_grad_() for t in x)
        out_e, out_f = eager(xs_e), fused(xs_f)
        assert out_f[1] is None
        weights = [torch.randn_like(t) for t in (out_e[0], out_e[2])]
        sum((o * w).sum() for o, w in zip((out_e[0], out_e[2]), weights)).backward()
        sum((o * w).sum() for o, w in zip((out_f[0], out_f[2]), weights)).backward()
        for k in (0, 2):
            torch.testing.assert_close(out_f[k], out_e[k], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(xs_f[k].grad, xs_e[k].grad, rtol=1e-4, atol=1e-5)
    for (name, a), (_, b) in zip(eager.named_parameters(), fused.named_parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5, msg=name)
    for (name, a), (_, b) in zip(eager.named_buffers(), fused.named_buffers()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)  # running mean/var, batches tracked
    eager.eval(), fused.eval()
    x = (torch.randn(2, 6, 5, 5), None, torch.randn(2, 3, 2, 2))
    torch.testing.assert_close(fused(x)[0], eager(x)[0])  # evaluation is the eager path


def test_past_dynamo_s_recompile_limit_the_block_still_trains_with_the_same_maths() -> None:
    # A long run met more graphs than the limit (every width, then an epoch's partial last batch): that must
    # fall back to the eager pair, not end the run.
    import torch._dynamo

    from csnet.train.compile import _kernel

    _kernel()  # sets the limit; lower it so that the batch sizes below go past it
    saved = torch._dynamo.config.recompile_limit
    torch._dynamo.config.recompile_limit = 1
    try:
        eager, fused = _block(2), _block(2)
        compile_norm_act(fused)
        for batch in (4, 3, 1, 2, 5):
            x = (torch.randn(batch, 6, 4, 5), None, torch.randn(batch, 3, 2, 3))
            out_e, out_f = eager(x), fused(x)
            for k in (0, 2):
                torch.testing.assert_close(out_f[k], out_e[k], rtol=1e-5, atol=1e-5)
    finally:
        torch._dynamo.config.recompile_limit = saved


def test_one_graph_serves_every_width_also_inside_ddp(tmp_path: Path) -> None:
    import torch._dynamo
    import torch.distributed as dist
    from torch._dynamo.utils import counters

    from csnet.bench.train_bench import _free_port

    torch._dynamo.reset()
    counters.clear()
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        model = create_model("csnet_l_x1").train()  # blocks of many widths
        compile_norm_act(model)
        ddp = nn.parallel.DistributedDataParallel(model)
        ddp(torch.randn(2, 3, 32, 32)).mean().backward()
        # a few graphs (widths of 1 are always specialized), not one per width as under Dynamo's DDP optimizer
        assert counters["stats"]["unique_graphs"] <= 4
    finally:
        dist.destroy_process_group()


def test_compile_norm_act_keeps_parameters_and_skips_sync_batchnorm() -> None:
    model = create_model("csnet_x1")
    params, keys = [id(p) for p in model.parameters()], list(model.state_dict())
    blocks = sum(type(m) is ScaleBNPReLU for m in model.modules())
    assert compile_norm_act(model) == blocks > 0
    assert [id(p) for p in model.parameters()] == params and list(model.state_dict()) == keys
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(create_model("csnet_x1"))
    assert compile_norm_act(synced) == 0  # cross-rank statistics stay with SyncBatchNorm


def test_csnet_train_with_compile_norm_act(tiny_data: Path, tmp_path: Path) -> None:
    config = TrainConfig(model="csnet_l_x1", data=(str(tiny_data),), size=32, epochs=1, batch_size=4, workers=0,
                         device="cpu", tensorboard=False, log_every=1, seed=3, weight_decay_mode="standard")
    train(config.replace(compile="norm-act"), tmp_path / "compiled")
    train(config, tmp_path / "eager")
    rows = list(csv.DictReader((tmp_path / "compiled" / "metrics.csv").read_text().splitlines()))
    assert math.isfinite(float(rows[0]["loss"]))
    compiled, eager = (load_model(tmp_path / run / "last.safetensors") for run in ("compiled", "eager"))
    for (name, a), b in zip(compiled.state_dict().items(), eager.state_dict().values()):
        if a.is_floating_point():  # the same maths: only float rounding differs (Adam amplifies it near zero)
            assert (a - b).abs().max() <= 1e-3 * (1 + b.abs().max()), name
    assert TrainConfig.load(tmp_path / "compiled" / "config.json").compile == "norm-act"
    with pytest.raises(ValueError, match="compile must be one of"):
        config.replace(compile="everything")
