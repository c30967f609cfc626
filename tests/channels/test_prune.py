"""Threshold pruning: the pruned network is physically smaller and computes the same function.

Exactness is checked two ways. With circular padding swapped into every conv of both networks a constant
channel is constant everywhere, so folding is exact on the whole image: the pruned and the masked (gammas set
to 1e-25) networks must agree to float32 rounding. With the real zero padding they must agree in the interior,
the pixels at least ``border_margin(config)`` from every border (456 px for CSNet x2, so that check runs on a
smaller model, 108 px, with a 256 x 256 input); the border error is printed (``pytest -s``) and only
required to be finite: with random weights it is large (tens of logits); for the released CSNet-L-x2 at
1e-20 it is float rounding (its dead channels' constants are ~0) and PASCAL-S max F does not move.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from csnet.channels.prune import (
    DEFAULT_THRESHOLD,
    PruneError,
    border_margin,
    bn_gammas,
    prune_model,
    unit_scores,
)
from csnet.models import CSNet, csnet_channels, load_model, save_model
from tests.shared_data import require_shared

DEAD = 1e-25


# ----------------------------------------------------------------------------------------------- helpers
def randomize(model: CSNet, seed: int) -> torch.Generator:
    """Random gammas (some negative), betas and PReLU slopes; BN statistics measured on a random batch, then
    perturbed, so activations keep a sane scale through the ~60 layers."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            sign = torch.where(torch.rand(c, generator=g) < 0.2, -1.0, 1.0)
            m.weight.data = sign * (0.5 + torch.rand(c, generator=g))
            m.bias.data = 0.3 * torch.randn(c, generator=g)
            m.reset_running_stats()
            m.momentum = None
        elif isinstance(m, nn.PReLU):
            m.weight.data = 0.5 * torch.rand(m.weight.shape, generator=g)
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32, generator=g))
    model.eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1
            m.running_mean += 0.1 * torch.randn(m.num_features, generator=g)
            m.running_var *= 0.8 + 0.4 * torch.rand(m.num_features, generator=g)
    return g


def kill_random(model: CSNet, g: torch.Generator, low: float = 0.3, high: float = 0.6,
                block_layers: tuple[int, ...] = (0, 2)) -> dict:
    """Set the gammas of a random 30-60% of the channels pruning governs to ~0.

    A block channel dies at a random one of ``block_layers`` (0: first CBR, 2: last CBR, the default rule's
    BNs). Returns the expected surviving widths per layer.
    """
    fraction = low + (high - low) * float(torch.rand(1, generator=g))
    expected = {}
    for s, stage in enumerate(model.stages):
        for b, block in enumerate(stage):
            widths = []
            for j, c in enumerate(block.out_channels):
                if not c:
                    widths.append(0)
                    continue
                dead = torch.rand(c, generator=g) < fraction
                which = torch.tensor(block_layers)[torch.randint(0, len(block_layers), (c,), generator=g)]
                for k, cbr in enumerate((block.conv1, block.conv2, block.conv3)):
                    cbr.norm_act.bns[str(j)].weight.data[dead & (which == k)] = DEAD
                widths.append(int((~dead).sum()))
            expected[f"stages.{s}.{b}"] = tuple(widths)
    fusion = model.fusion
    for name, cbr in (("fusion.fuse", fusion.fuse), ("fusion.merge", fusion.merge)):
        widths = []
        for j, c in enumerate(cbr.out_channels):
            dead = torch.rand(c, generator=g) < fraction
            cbr.norm_act.bns[str(j)].weight.data[dead] = DEAD
            widths.append(int((~dead).sum()))
        expected[name] = tuple(widths)
    rows = []
    for i, row in enumerate(fusion.dilated.widths):
        if not sum(row):
            rows.append(tuple(0 for _ in row))
            continue
        dead = torch.rand(sum(row), generator=g) < fraction
        fusion.dilated.norm_act.bns[str(i)].weight.data[dead] = DEAD
        alive, offsets = ~dead, np.cumsum([0, *row])
        rows.append(tuple(int(alive[offsets[k]: offsets[k + 1]].sum()) for k in range(len(row))))
    expected["fusion.dilated"] = tuple(rows)
    return expected


def set_padding(model: nn.Module, mode: str) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.padding_mode = mode


def compare(masked: CSNet, pruned: CSNet, x: torch.Tensor, padding: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``|masked(x) - pruned(x)|`` (B x 1 x H x W) and ``max |masked(x)|``, every conv padding with ``padding``."""
    try:
        set_padding(masked, padding)
        set_padding(pruned, padding)
        with torch.no_grad():
            reference = masked(x)
            return (reference - pruned(x)).abs(), reference.abs().max()
    finally:
        set_padding(masked, "zeros")
        set_padding(pruned, "zeros")


def float_tolerance(scale: torch.Tensor, dtype: torch.dtype = torch.float32) -> float:
    # rounding through ~60 layers whose random weights amplify it: measured ~1e-5 relative in float32 and
    # ~1e-14 in float64 (x2, 128 x 128, circular padding)
    relative = 5e-5 if dtype == torch.float32 else 1e-11
    return relative * float(scale) + relative


def random_model(config, seed: int) -> tuple[CSNet, torch.Generator]:
    """A CSNet with seeded random weights (the global RNG is left as it was)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = CSNet(config)
    return model, randomize(model, seed)


@pytest.fixture(scope="module")
def x2():
    """A random CSNet x2 with 30-60% of its channels dead, its pruned version, the report, expected widths."""
    model, g = random_model(csnet_channels(2.0, name="csnet_x2"), seed=0)
    expected = kill_random(model, g)
    pruned, report = prune_model(model, count_macs=False)
    return model, pruned, report, expected


# ------------------------------------------------------------------------------------------------ tests
def test_pruned_x2_is_exact_with_circular_padding(x2):
    masked, pruned, _, _ = x2
    x = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    error, scale = compare(masked, pruned, x, "circular")
    print(f"\nx2, circular padding: max |logit error| {error.max():.3g} (logits up to {scale:.3g})")
    assert error.max() <= float_tolerance(scale)


def test_pruned_x2_border_error_with_zero_padding_is_reported(x2):
    masked, pruned, report, _ = x2
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    error, scale = compare(masked, pruned, x, "zeros")
    margin = border_margin(masked.config)
    print(f"\nx2, zero padding at 64x64 (margin {margin} px: no interior): max |logit error| "
          f"{error.max():.3g}, mean {error.mean():.3g} (logits up to {scale:.3g}); "
          f"{len(report.border_folds)} layers fold constants through zero padding")
    assert margin == 456
    assert torch.isfinite(error).all()
    assert report.border_folds


def test_widths_params_and_config_follow_the_dead_gammas(x2):
    masked, pruned, report, expected = x2
    after = {layer.name: layer.after for layer in report.layers}
    assert after == expected
    config = pruned.config
    for s, stage in enumerate(config.stages):
        for b, block in enumerate(stage):
            assert block.out_channels == expected[f"stages.{s}.{b}"]
    assert config.fusion.fuse_channels == expected["fusion.fuse"]
    assert config.fusion.dilation_channels == expected["fusion.dilated"]
    assert (config.fusion.out_channels,) == expected["fusion.merge"]
    assert report.params_after == sum(p.numel() for p in pruned.parameters()) < report.params_before
    assert report.params_before == 788_631
    survivors = sum(sum(np.ravel(w)) for w in expected.values())
    assert report.channels_before - report.channels_removed == survivors
    assert report.largest_removed_gamma == pytest.approx(DEAD) and report.smallest_kept_gamma >= 0.5
    assert report.gap_decades > 20


def test_pruned_model_saves_and_loads(x2, tmp_path):
    _, pruned, _, _ = x2
    path = save_model(pruned, tmp_path / "small.safetensors")
    loaded = load_model(path)
    assert loaded.config == pruned.config
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(loaded(x), pruned.eval()(x))


def _small_config(**kwargs):
    # two fused stages: border_margin is 108 px (x2's is 456), so a 256 x 256 input has a 40 x 40 interior
    return csnet_channels(kwargs.pop("width", 0.5), fusion_stages=(2, 3), stage_depths=(1, 1, 1, 1), **kwargs)


def test_interior_is_exact_with_zero_padding():
    model, g = random_model(_small_config(name="small"), seed=4)
    kill_random(model, g)
    pruned, report = prune_model(model, count_macs=False)
    margin = border_margin(model.config)
    size = 256
    assert margin == 108
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(5))
    error, scale = compare(model, pruned, x, "zeros")
    interior = error[..., margin: size - margin, margin: size - margin]
    band = error.clone()
    band[..., margin: size - margin, margin: size - margin] = 0
    print(f"\nsmall model, zero padding, margin {margin} px: interior max error {interior.max():.3g}, "
          f"border band max {band.max():.3g} (logits up to {scale:.3g})")
    assert interior.max() <= float_tolerance(scale)
    assert torch.isfinite(error).all()


def test_vanishing_scales_branches_and_csf_scales():
    model, g = random_model(_small_config(name="small"), seed=6)
    stage1 = model.stages[1][0]
    stage1.conv1.norm_act.bns["1"].weight.data[:] = DEAD          # a whole scale of a block
    dilated = model.fusion.dilated
    dilated.norm_act.bns["0"].weight.data[:dilated.widths[0][0]] = DEAD  # dilation-1 branch of CSF scale 0
    model.fusion.fuse.norm_act.bns["1"].weight.data[:] = DEAD     # a whole CSF scale (its dilated convs too)
    model.stages[2][0].conv3.norm_act.bns["0"].weight.data[:3] = DEAD
    # float64 throughout (the folded statistics too): exact to ~1e-14 relative, so any folding mistake shows
    model = model.double()
    pruned, report = prune_model(model, count_macs=False)
    assert next(pruned.parameters()).dtype == torch.float64
    config = pruned.config
    assert config.stages[1][0].out_channels[1] == 0
    assert config.stages[2][0].in_channels[1] == 0
    assert config.fusion.dilation_channels[0][0] == 0
    assert config.fusion.fuse_channels[1] == 0 and sum(config.fusion.dilation_channels[1]) == 0
    assert config.stages[2][0].out_channels[0] == model.config.stages[2][0].out_channels[0] - 3
    x = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    error, scale = compare(model, pruned, x, "circular")
    print(f"\nvanishing scales, float64, circular padding: max error {error.max():.3g} (logits up to {scale:.3g})")
    assert error.max() <= float_tolerance(scale, torch.float64)


def test_block_rules_choose_which_cbrs_decide():
    model, _ = random_model(_small_config(name="small"), seed=8)
    block = model.stages[1][0]
    for index, cbr in enumerate((block.conv1, block.conv3, block.conv2)):  # first, last, middle CBR
        cbr.norm_act.bns["0"].weight.data[index] = DEAD
    width = block.out_channels[0]
    widths = {rule: prune_model(model, block_rule=rule, count_macs=False)[1].config.stages[1][0].out_channels[0]
              for rule in ("first", "first_or_last", "any")}
    assert widths == {"first": width - 1, "first_or_last": width - 2, "any": width - 3}
    x = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(12))
    pruned, report = prune_model(model, block_rule="any", count_macs=False)
    error, scale = compare(model, pruned, x, "circular")  # the middle-CBR fold is exact away from borders
    assert error.max() <= float_tolerance(scale)
    assert any("stages.1.0.conv3" in fold for fold in report.border_folds)


def test_ratio_removes_the_smallest_gammas_globally():
    model, _ = random_model(_small_config(name="small"), seed=9)
    scores = unit_scores(model)
    flat = torch.cat(list(scores.values()))
    pruned, report = prune_model(model, ratio=0.3, input_size=(64, 64))
    n_remove = math.floor(0.3 * flat.numel())
    assert report.mode == "ratio" and report.channels_removed == n_remove
    assert report.threshold == float(torch.sort(flat).values[n_remove - 1])
    assert report.params_after < report.params_before and report.macs_after < report.macs_before
    with torch.no_grad():
        assert pruned(torch.randn(1, 3, 64, 64)).shape == (1, 1, 64, 64)
    unchanged, zero = prune_model(model, ratio=0.0, count_macs=False)
    assert zero.channels_removed == 0 and unchanged.config.stages == model.config.stages


def test_bad_arguments_and_impossible_pruning():
    model = CSNet(_small_config(name="small"))
    with pytest.raises(ValueError):
        prune_model(model, threshold=1e-20, ratio=0.5, count_macs=False)
    with pytest.raises(ValueError):
        prune_model(model, ratio=1.0, count_macs=False)
    with pytest.raises(ValueError):
        prune_model(model, block_rule="last", count_macs=False)
    with pytest.raises(PruneError, match="every channel"):
        prune_model(model, threshold=10.0, count_macs=False)


def test_min_channels_keeps_a_killed_block_alive_and_exact():
    model, g = random_model(_small_config(name="small"), seed=6)
    kill_random(model, g)
    block = model.stages[2][0]
    for j, width in enumerate(block.out_channels):
        if width:
            block.conv1.norm_act.bns[str(j)].weight.data[:] = DEAD * torch.rand(width, generator=g)
    with pytest.raises(PruneError, match="every channel of stages.2.0"):
        prune_model(model, count_macs=False)
    pruned, report = prune_model(model, count_macs=False, min_channels=2)
    assert report.kept_to_minimum == ("stages.2.0",)
    assert sum(pruned.config.stages[2][0].out_channels) == 2
    assert "stages.2.0" in report.format() and report.to_dict()["kept_to_minimum"] == ["stages.2.0"]
    # the two channels kept carry their (tiny) gamma through; everything removed is folded as before
    error, scale = compare(model, pruned, torch.randn(1, 3, 64, 64, generator=g), "circular")
    assert error.max() <= float_tolerance(scale)
    with pytest.raises(ValueError, match="min_channels"):
        prune_model(model, count_macs=False, min_channels=-1)


def test_original_model_is_left_untouched():
    model, g = random_model(_small_config(name="small"), seed=10)
    kill_random(model, g)
    before = copy.deepcopy(model.state_dict())
    prune_model(model, count_macs=False)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


# ------------------------------------------------------------------------------------ released CSNet-L-x2
def _pascal_subset(step: int):
    from PIL import Image

    root = require_shared("data", "PASCAL-S")
    images = sorted((root / "images").glob("*.jpg"), key=lambda p: int(p.stem))[::step]
    for path in images:
        image = np.asarray(Image.open(path).convert("RGB"))
        mask = np.asarray(Image.open(root / "masks" / f"{path.stem}.png").convert("L"))
        yield image, mask


def pascal_max_f(models: dict[str, CSNet], step: int = 1, batch: int = 5) -> dict[str, float]:
    """Max F of each model on every ``step``-th PASCAL-S image, through the test protocol."""
    from csnet.infer.protocol import postprocess, preprocess
    from csnet.metrics import FMeasure

    meters = {name: FMeasure() for name in models}
    pending: list[tuple[np.ndarray, np.ndarray]] = []

    def flush():
        x = torch.cat([preprocess(image) for image, _ in pending])
        for name, model in models.items():
            with torch.no_grad():
                logits = model(x)
            for (image, mask), logit in zip(pending, logits):
                meters[name].step(postprocess(logit, image.shape[:2]), mask)
        pending.clear()

    for pair in _pascal_subset(step):
        pending.append(pair)
        if len(pending) == batch:
            flush()
    if pending:
        flush()
    return {name: meter.get_results()["maxF"] for name, meter in meters.items()}


@pytest.fixture(scope="module")
def release_l_x2():
    from csnet.models.official import import_official

    official = require_shared("weights", "official")
    return import_official(official / "csnet-L-x2.pth.tar", official / "csnet-L-x2.bin")


@pytest.mark.shared
def test_release_gammas_and_rules(release_l_x2):
    gammas = torch.cat(list(bn_gammas(release_l_x2).values()))
    dead, alive = gammas[gammas < DEFAULT_THRESHOLD], gammas[gammas >= DEFAULT_THRESHOLD]
    # 14 of 2,709 below 1e-20, all <= 2.5e-42; the smallest above is 9.4e-20: a gap of 22 decades
    assert dead.numel() == 14 and gammas.numel() == 2709
    assert float(dead.max()) < 3e-42 and 9e-20 < float(alive.min()) < 1e-19
    # none of the 14 sits in a first CBR: the release's own rule finds nothing left to prune; 8 sit in a last
    # CBR (removed by default), 6 in a middle one (kept by default: they carry a border signal)
    removed = {rule: prune_model(release_l_x2, block_rule=rule, count_macs=False)[1]
               for rule in ("first", "first_or_last", "any")}
    assert removed["first"].channels_removed == 0 and removed["first"].params_after == 140_894
    assert removed["first_or_last"].channels_removed == 8 and removed["first_or_last"].params_after == 138_775
    assert removed["any"].channels_removed == 14


@pytest.mark.shared
@pytest.mark.slow
def test_release_l_x2_pruned_keeps_max_f(release_l_x2):
    pruned, report = prune_model(release_l_x2, threshold=1e-20, count_macs=False)
    assert report.channels_removed == 8
    reference = np.load(require_shared("reference", "official_io.npz"))
    with torch.no_grad():
        x = torch.from_numpy(reference["inputs"][[0, 1, 2, 3, 8]])  # four photos and the noise tensor
        error = (release_l_x2(x) - pruned(x)).abs()
    assert error.max() <= 1e-4  # their constants are ~0: float rounding, border included
    scores = pascal_max_f({"release": release_l_x2, "pruned": pruned}, step=71, batch=6)
    print(f"\nCSNet-L-x2 pruned at 1e-20: params {report.params_before:,} -> {report.params_after:,}; "
          f"logit error on official_io inputs max {error.max():.3g}, mean {error.mean():.3g}; "
          f"PASCAL-S (12 images) max F {scores['release']:.4f} -> {scores['pruned']:.4f}")
    assert abs(scores["release"] - scores["pruned"]) <= 0.002
