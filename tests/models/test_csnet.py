"""The CSNet family: SPEC parameter counts and MACs, any input size, clear input errors, every model trains."""
import pytest
import torch

import csnet
from csnet.models import ChannelConfig, CSNet, csnet_channels
from csnet.models.summary import count_macs

# SPEC.md section 2: counted with torch.utils.flop_counter on the authors' model.
SPEC = {
    "csnet_x1": (210_985, 0.433e9),
    "csnet_x2": (788_631, 1.516e9),
    "csnet_l_x1": (93_647, 0.284e9),
    "csnet_l_x2": (140_894, 0.496e9),
}


@pytest.mark.parametrize("name", sorted(SPEC))
def test_parameter_counts_and_macs_match_spec(name):
    model = csnet.create_model(name)
    params, macs = SPEC[name]
    assert sum(p.numel() for p in model.parameters()) == params
    assert abs(count_macs(model, (224, 224)) - macs) / macs < 0.01


def test_x1_channel_table():
    config = csnet_channels(1.0)
    outs = [b.out_channels for b in config.blocks]
    assert outs[0] == (10, 10) and outs[7] == (40,) and outs[13] == (80,) and outs[17] == (80,)
    assert config.fusion_in_channels == (40, 80, 80)
    assert config.fusion.fuse_channels == (13, 26, 26)
    assert config.fusion.dilation_channels == ((2, 2, 2, 2, 5), (5, 5, 5, 5, 6), (5, 5, 5, 5, 6))
    assert config.fusion.out_channels == 65


@pytest.mark.parametrize("name", csnet.list_models())
def test_every_registered_model_runs_forward_and_backward(name):
    model = csnet.create_model(name).train()
    x = torch.randn(2, 3, 48, 64, requires_grad=True)
    y = model(x)
    assert y.shape == (2, 1, 48, 64)
    y.mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("size", [(225, 301), (8, 8), (1, 17), (224, 224)])
def test_any_input_size_gives_the_same_output_size(size):
    model = csnet.create_model("csnet_l_x1").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, *size)).shape == (1, 1, *size)


def test_multiple_of_16_input_is_not_padded(monkeypatch):
    model = csnet.create_model("csnet_x1").eval()
    calls = []
    original = torch.nn.functional.pad
    monkeypatch.setattr(torch.nn.functional, "pad", lambda *a, **k: calls.append(1) or original(*a, **k))
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 96))
        assert not calls
        model(torch.randn(1, 3, 63, 95))
        assert calls


@pytest.mark.parametrize("bad, message", [
    (torch.randn(1, 4, 32, 32), "3 input channels"),
    (torch.randn(0, 3, 32, 32), "empty batch"),
    (torch.randn(3, 32, 32), "B x 3 x H x W"),
])
def test_bad_inputs_raise_clear_errors(bad, message):
    model = csnet.create_model("csnet_l_x1").eval()
    with pytest.raises(ValueError, match=message):
        model(bad)


@pytest.mark.parametrize("stages", [(4,), (3, 4), (2, 3, 4), (1, 2, 3, 4)])
def test_fusion_stage_ablations(stages):
    model = csnet.create_model("csnet_x1", fusion_stages=stages).eval()
    assert model.config.fusion.stages == stages
    assert len(model.fusion.in_channels) == len(stages)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1, 64, 64)


def test_fusing_more_stages_costs_more_parameters():
    counts = [sum(p.numel() for p in csnet.create_model("csnet_x2", fusion_stages=s).parameters())
              for s in [(4,), (3, 4), (2, 3, 4), (1, 2, 3, 4)]]
    assert counts == sorted(counts)


def test_width_multiplier():
    model = csnet.create_model("csnet", width=1.8)
    assert model.config.blocks[0].out_channels == (18, 18)
    assert model.config.name == "csnet_x1.8"


def test_config_json_round_trip_builds_the_same_network():
    for name in ["csnet_x2", "csnet_l_x2"]:
        model = csnet.create_model(name)
        again = ChannelConfig.from_json(model.config.to_json())
        assert again == model.config
        rebuilt = CSNet(again)
        assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in model.parameters()]


def test_zero_width_scales_vanish():
    base = csnet_channels(1.0).to_dict()
    # Kill the coarse scale of stage 1's middle block and the first dilation branch of CSF scale 0.
    base["stages"][1][1]["out_channels"] = [10, 0]
    base["stages"][1][2]["in_channels"] = [10, 0]
    base["fusion"]["dilation_channels"][0] = [0, 2, 2, 2, 5]
    config = ChannelConfig.from_dict(base)
    model = CSNet(config).eval()
    assert "1" not in model.stages[1][1].conv1.norm_act.bns
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 1, 32, 32)


def test_invalid_configs_are_refused():
    data = csnet_channels(1.0).to_dict()
    data["stages"][2][1]["in_channels"] = [21, 20]
    with pytest.raises(ValueError, match=r"block 5 takes \(21, 20\) but block 4 gives \(20, 20\)"):
        ChannelConfig.from_dict(data)
    with pytest.raises(ValueError, match="not a valid ChannelConfig"):
        ChannelConfig.from_dict({"stages": []})


def test_registry():
    assert {"csnet_x1", "csnet_x2", "csnet_l_x1", "csnet_l_x2"} <= set(csnet.list_models())
    assert csnet.list_models("csnet_l*") == ["csnet_l_x1", "csnet_l_x2"]
    with pytest.raises(KeyError, match="unknown model"):
        csnet.create_model("resnet50")
    from csnet.models import register_model

    with pytest.raises(ValueError, match="already registered"):
        register_model(csnet.models.csnet.csnet_x1)


def test_named_blocks_is_the_forward_order_with_strides_and_padding_rule():
    import csnet

    model = csnet.create_model("csnet_l_x1")
    refs = list(model.named_blocks())
    assert [r.name for r in refs] == [f"stages.{s}.{b}" for s, stage in enumerate(model.stages)
                                      for b in range(len(stage))]
    for s in range(len(model.stages)):
        last = [r for r in refs if r.stage == s][-1]
        assert last.stride == model.config.stage_stride(s)
    used = list(model.named_blocks(used_only=True))
    assert used[-1].stage == max(model.config.fusion.stages)
    assert model.config.padding(224, 225) == (0, (-225) % model.config.pad_multiple)
