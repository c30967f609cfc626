"""Dynamic weight decay: the gradient it adds to each BN weight, its selection, AMP and non-CSNet models."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from csnet.channels import DecayTarget, DynamicWeightDecay, batchnorm_targets, csnet_targets
from csnet.models import ILBlock, create_model


pytestmark = pytest.mark.usefixtures("one_thread")


def _randomize_bns(model: nn.Module, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=generator))
                m.bias.copy_(torch.randn(m.bias.shape, generator=generator) * 0.5)


def _expected_strength(model: nn.Module, x: torch.Tensor) -> dict[int, torch.Tensor]:
    """mean_batch |GAP(PReLU(BN(.)))| per ILBlock BN, recomputed independently with our own hooks."""
    stats: dict[int, torch.Tensor] = {}
    handles = []
    for block in model.modules():
        if isinstance(block, ILBlock):
            for cbr in (block.conv1, block.conv2, block.conv3):
                for key, bn in cbr.norm_act.bns.items():
                    act = cbr.norm_act.acts[key]
                    handles.append(act.register_forward_hook(
                        lambda mod, inp, out, bn=bn: stats.__setitem__(id(bn), out.detach().mean((2, 3)).abs().mean(0))))
    model(x)
    for h in handles:
        h.remove()
    return stats


def test_gradient_on_gamma_is_strength_times_activation_times_gamma() -> None:
    torch.manual_seed(0)
    model = create_model("csnet_l_x1").train()
    _randomize_bns(model)
    x = torch.randn(2, 3, 32, 32)
    expected = _expected_strength(model, x)
    dwd = DynamicWeightDecay(model, strength=3.0)
    model.zero_grad()
    model(x)
    dwd.penalty().backward()
    governed = {id(t.bn) for t in dwd.targets}
    assert governed == set(expected)
    for module in model.modules():
        if not isinstance(module, nn.BatchNorm2d):
            continue
        grad = module.weight.grad
        if id(module) in governed:
            want = 3.0 * expected[id(module)] * module.weight.detach()
            torch.testing.assert_close(grad, want, rtol=1e-5, atol=1e-7)
            assert module.bias.grad is None or torch.count_nonzero(module.bias.grad) == 0
        else:  # CSF BNs are not decayed
            assert grad is None or torch.count_nonzero(grad) == 0
    csf_bns = [m for m in model.fusion.modules() if isinstance(m, nn.BatchNorm2d)]
    assert csf_bns and not governed & {id(m) for m in csf_bns}


def test_regularizer_value_and_scale_weights() -> None:
    torch.manual_seed(1)
    model = create_model("csnet_l_x1").train()
    _randomize_bns(model, 1)
    x = torch.randn(2, 3, 32, 32)
    expected = _expected_strength(model, x)
    dwd = DynamicWeightDecay(model, strength=2.0, scale_weights=(1.0, 0.25))
    model(x)
    value = dwd.regularizer()
    want = sum(0.5 * t.weight * (expected[id(t.bn)] * t.bn.weight.detach() ** 2).sum() for t in dwd.targets)
    torch.testing.assert_close(value, want.float())
    assert {t.weight for t in dwd.targets} == {1.0, 0.25}
    assert all(t.weight == (1.0 if t.name.endswith("bns.0") else 0.25) for t in dwd.targets)
    # consumed: without a new training forward the penalty is 0; eval forwards record nothing
    assert float(dwd.penalty()) == 0.0
    model.eval()
    model(x)
    assert float(dwd.penalty()) == 0.0


def test_decayed_parameters_are_the_ilblock_bn_weights() -> None:
    model = create_model("csnet_l_x1")
    dwd = DynamicWeightDecay(model)
    params = dwd.decayed_parameters()
    expected = [bn.weight for b in model.modules() if isinstance(b, ILBlock)
                for m in b.modules() if isinstance(m, nn.BatchNorm2d) for bn in [m]]
    assert {id(p) for p in params} == {id(p) for p in expected}
    assert len(csnet_targets(model)) == len(params)


class _TinyResNet(nn.Module):
    """A small ResNet-like net calling ReLU functionally after each BN."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(8)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn0(self.stem(x)))
        y = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(y)) + x)
        return self.fc(x.mean((2, 3)))


def test_generic_model_with_functional_activation() -> None:
    torch.manual_seed(2)
    net = _TinyResNet().train()
    _randomize_bns(net, 2)
    x = torch.randn(4, 3, 12, 12)
    # The activation after bn0 and bn1 is a functional ReLU; bn2's output goes into a residual sum, so it is
    # left out here to show an explicit selection.
    dwd = DynamicWeightDecay(net, strength=3.0,
                             select=lambda m: batchnorm_targets(m, activation=torch.relu, exclude=[m.bn2]))
    assert [t.bn for t in dwd.targets] == [net.bn0, net.bn1]
    out = net(x)
    loss = F.cross_entropy(out, torch.zeros(4, dtype=torch.long)) * 0 + dwd.penalty()
    loss.backward()
    with torch.no_grad():
        a0 = F.relu(net.bn0(net.stem(x)))
        a1 = F.relu(net.bn1(net.conv1(a0)))
    for bn, act in ((net.bn0, a0), (net.bn1, a1)):
        want = 3.0 * act.mean((2, 3)).abs().mean(0) * bn.weight.detach()
        torch.testing.assert_close(bn.weight.grad, want, rtol=1e-5, atol=1e-7)
    assert net.bn2.weight.grad is None or torch.count_nonzero(net.bn2.weight.grad) == 0
    # default selection on a non-CSNet: every BN, observed at its own output
    assert len(DynamicWeightDecay(_TinyResNet()).targets) == 3


def test_explicit_target_list_and_errors() -> None:
    net = _TinyResNet()
    dwd = DynamicWeightDecay(net, select=[net.bn1, DecayTarget(net.bn0, net.bn0, torch.relu, 2.0, "bn0")])
    assert len(dwd) == 2
    with pytest.raises(ValueError, match="twice"):
        DynamicWeightDecay(net, select=[net.bn1, net.bn1])
    with pytest.raises(ValueError, match="BatchNorm"):
        DynamicWeightDecay(net, select=[net.conv1])
    dwd.remove()


def test_bf16_autocast_penalty_is_float32() -> None:
    torch.manual_seed(3)
    model = create_model("csnet_l_x1").train()
    dwd = DynamicWeightDecay(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.randn(2, 3, 32, 32))
        penalty = dwd.penalty()
    assert penalty.dtype == torch.float32 and torch.isfinite(penalty) and penalty > 0
    penalty.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in dwd.decayed_parameters())


def test_works_through_a_wrapper() -> None:
    """Targets come from the inner module of a DDP-like wrapper (anything with ``.module``)."""

    class Wrapper(nn.Module):
        def __init__(self, module: nn.Module) -> None:
            super().__init__()
            self.module = module

        def forward(self, x):
            return self.module(x)

    model = create_model("csnet_l_x1").train()
    wrapped = Wrapper(model)
    dwd = DynamicWeightDecay(wrapped)
    wrapped(torch.randn(2, 3, 32, 32))
    assert dwd.penalty() > 0 and len(dwd) == len(csnet_targets(model))


