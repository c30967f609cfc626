"""Pruning: rebuild a CSNet physically smaller from its BatchNorm gammas (SPEC 3; Gao et al., ECCV 2020).

After dynamic weight decay (:mod:`csnet.channels.dwd`) a dead channel has ``|gamma| ~ 1e-40`` while a live one
has ``|gamma| ~ 1e-3``; :func:`prune_model` removes every channel whose ``|gamma|`` is below a threshold
(``1e-20``, the release's recipe) and returns a plain :class:`~csnet.models.CSNet` built from the new
:class:`~csnet.models.ChannelConfig`, with the surviving weights, BN statistics and PReLU slopes copied over.

Which BN decides which channel ("units"):

* **ILBlock** (``stages.S.B``): one mask per block and scale, shared by its three CBRs (the 1x1/3x3 gOctConv
  and the two 3x3 depthwise convs): a channel is removed from all three layers at once, its output slices, its
  depthwise kernels and BN/PReLU entries, and the input slices of every consumer link (the next block's
  gOctConv, and the CSF's first gOctConv for the last block of a fused stage). The release takes that mask
  from the *first* CBR's BN (``block_rule="first"`` reproduces it, and is kept in the default). Depthwise BNs
  with ``gamma ~ 0`` are handled as measured on the released CSNet-L-x2, which has 14 of them below 1e-20 (and
  none in a first CBR):

  - dead at the *last* CBR (8 channels): the block outputs exactly ``PReLU(beta)`` everywhere, so the
    channel is removed and its constant folded (their betas are ~0: removing them changes no logit by more
    than float rounding). The default ``block_rule="first_or_last"`` removes these.
  - dead at the *middle* CBR only (6 channels): the constant then runs through the last depthwise 3x3 conv,
    whose zero padding makes it differ along the border, and the last BN, whose running variance is ~0 for
    such a channel, amplifies that ring: these channels carry a learned border signal, not nothing. Removing
    them (``block_rule="any"``) moved logits by up to 1.8 and PASCAL-S max F from 0.7953 to 0.7911, so by
    default they are kept.

  The score of a block channel is the min of the ``|gamma|`` its rule looks at.
* **CSF**: the first gOctConv's BNs give the fuse widths per scale; the dilated BN (one BN per scale over the
  concatenated dilation branches) gives each branch's width (a branch, or a whole scale, may vanish); the
  merge CBR's BN, the last BN before the head, gives the final width.
* A scale whose every input channel was removed is itself constant and vanishes too.

Exactness. A channel with ``gamma ~ 0`` is not zero: its BN outputs ``beta`` and the channel carries the
constant ``PReLU(beta)``. That constant is folded into its consumers instead of being dropped: through a conv
(after any max-pool, avg-pool or bilinear upsampling, all of which keep a constant constant) it adds
``sum(W[o, c]) * value`` to output channel ``o`` before the next BN, so that BN's ``running_mean`` is lowered
by it (``BN(x + d)`` with mean ``m`` equals ``BN(x)`` with mean ``m - d``); into the head it goes into the
bias. A channel removed at its first CBR still runs through the block's two depthwise CBRs: its constant is
propagated through them (``PReLU(BN(value * sum(kernel)))``, restarting at ``PReLU(beta)`` at any later BN
whose gamma is ~0 too) before being folded into the next block.

This is exact for 1x1 convs and, for kxk convs, in the *interior*. Where a constant meets a zero-padded kxk
conv (the depthwise 3x3 of a channel removed before its last CBR, the 3x3 gOctConv of stride-2 blocks, the CSF
dilated 3x3 convs with padding = dilation) the unpruned network sees zeros at padded positions while the
folded one sees the constant, so outputs differ in a band along the image border, by an amount proportional
to the constant (nothing when it is 0). :func:`border_margin` bounds the band's width (an output pixel at
least that far from every border is exact up to float rounding: 456 px for CSNet x2, i.e. no pixel of a
224 x 224 input is guaranteed) and :attr:`PruneReport.border_folds` lists the layers where it happens. For the
released CSNet-L-x2 at 1e-20 (default rule) the constants are ~0 and no logit moves beyond float rounding;
a channel dead at its first CBR with a sizeable beta would carry the same kind of border signal as the
middle-CBR case above, which is why :attr:`PruneReport.border_folds` is worth a look after pruning.

``ratio=R`` is the fixed-ratio rule of supplementary Table 4, read as network slimming does it (Liu et al.,
ICCV 2017, ref. [42] of the paper, which the supplementary says it modifies): one global ranking, and the
``floor(R * N)`` units (channels as above, CSF included) with the smallest score over the whole network are
removed, whatever their gamma. Table 4's rows (38% -> 300K, 51% -> 400K parameters from x2's 788,631) fit
"R of the parameters kept" better than "R of the channels removed"; we follow [42]'s definition, the
comparison is the same (a fixed ratio ignores that layers need different widths). Removed channels are
folded as if their gamma were 0: an approximation unless it is ~0 (network slimming fine-tunes afterwards).
"""
from __future__ import annotations

import copy
import logging
import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from csnet.models.config import BlockConfig, ChannelConfig, FusionConfig
from csnet.models.csnet import CSNet, ILBlock
from csnet.nn import GOctCBR, GOctConv

__all__ = [
    "DEFAULT_THRESHOLD", "BLOCK_RULES", "PruneError", "LayerWidths", "PruneReport", "prune_model",
    "unit_scores", "bn_gammas", "border_margin",
]

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 1e-20
"""The release's pruning threshold on ``|gamma|`` (supplementary Table 4: 1e-18 .. 1e-22 all give ~140K)."""

BLOCK_RULES = ("first_or_last", "first", "any")
"""Which BNs of a block decide its channel mask: first or last CBR (default), first CBR (the release), any."""

_RULE_LAYERS = {"first": (0,), "first_or_last": (0, 2), "any": (0, 1, 2)}
_RULE_TEXT = {"first": "its first CBR", "first_or_last": "its first or last CBR", "any": "any of its CBRs"}

_Feature = list  # per scale: None (width 0) or (keep: bool (C,), value: float64 (C,), 0 where kept)


class PruneError(ValueError):
    """Pruning cannot produce a valid network (e.g. every channel of a feature would be removed)."""


@dataclass(frozen=True)
class LayerWidths:
    """Output widths of one layer before and after pruning: per scale (``fusion.dilated``: per scale, per
    dilation branch)."""

    name: str
    before: tuple
    after: tuple


@dataclass(frozen=True)
class PruneReport:
    """What :func:`prune_model` did.

    ``threshold`` is the ``|gamma|`` threshold used; for ratio pruning it is the largest removed score.
    ``largest_removed_gamma`` / ``smallest_kept_gamma`` are over the channel scores of :func:`unit_scores`
    (a block channel's score is the min of the ``|gamma|`` its ``block_rule`` looks at); channels are
    the prunable units (``channels_before`` counts each block channel once, not once per BN).
    ``macs_*`` are multiply-accumulates of one ``input_size`` image (None when not counted).
    ``border_folds`` names the layers where a folded constant meets zero padding (exact only in the interior).
    ``kept_to_minimum`` names the layers that kept ``min_channels`` channels the rule would have removed.
    """

    mode: str
    threshold: float
    ratio: Optional[float]
    block_rule: str
    params_before: int
    params_after: int
    macs_before: Optional[int]
    macs_after: Optional[int]
    input_size: tuple[int, int]
    channels_before: int
    channels_removed: int
    largest_removed_gamma: Optional[float]
    smallest_kept_gamma: Optional[float]
    layers: tuple[LayerWidths, ...]
    border_folds: tuple[str, ...]
    config: ChannelConfig
    kept_to_minimum: tuple[str, ...] = ()

    @property
    def gap_decades(self) -> Optional[float]:
        """``log10(smallest kept / largest removed score)``: the gap of Fig. 6 (None if one side is empty)."""
        if not self.largest_removed_gamma or not self.smallest_kept_gamma:
            return None
        return math.log10(self.smallest_kept_gamma / self.largest_removed_gamma)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (the new ChannelConfig included)."""
        data = asdict(self)
        data["config"] = self.config.to_dict()
        data["layers"] = [{"name": layer.name, "before": _lists(layer.before), "after": _lists(layer.after)}
                          for layer in self.layers]
        data["border_folds"] = list(self.border_folds)
        data["kept_to_minimum"] = list(self.kept_to_minimum)
        data["input_size"] = list(self.input_size)
        data["gap_decades"] = self.gap_decades
        return data

    def format(self) -> str:
        """A human-readable multi-line summary (what ``csnet prune`` prints)."""
        if self.mode == "ratio":
            rule = f"ratio {self.ratio:g} (largest removed |gamma| {self.threshold:.3g})"
        else:
            rule = f"|gamma| < {self.threshold:g}"
        lines = [f"pruning    {rule}, block mask from {_RULE_TEXT.get(self.block_rule, self.block_rule)}",
                 f"channels   {self.channels_before:,} -> {self.channels_before - self.channels_removed:,} "
                 f"({self.channels_removed:,} removed)",
                 f"params     {self.params_before:,} -> {self.params_after:,}"]
        if self.macs_before is not None and self.macs_after is not None:
            h, w = self.input_size
            lines.append(f"MACs       {self.macs_before / 1e9:.4f} G -> {self.macs_after / 1e9:.4f} G at {h}x{w}")
        removed = "-" if self.largest_removed_gamma is None else f"{self.largest_removed_gamma:.3g}"
        kept = "-" if self.smallest_kept_gamma is None else f"{self.smallest_kept_gamma:.3g}"
        gap = "" if self.gap_decades is None else f" (gap {self.gap_decades:.1f} decades)"
        lines.append(f"|gamma|    largest removed {removed}, smallest kept {kept}{gap}")
        lines.append("widths     (per scale; dilated: per scale, per dilation)")
        for layer in self.layers:
            mark = "" if layer.before == layer.after else "  *"
            lines.append(f"  {layer.name:<16} {_widths_text(layer.before)} -> {_widths_text(layer.after)}{mark}")
        if self.kept_to_minimum:
            lines.append(f"minimum    {len(self.kept_to_minimum)} layers kept channels below the rule so as not to "
                         f"vanish: {', '.join(self.kept_to_minimum)}")
        if self.border_folds:
            lines.append(f"border     folded constants meet zero padding in {len(self.border_folds)} layers: "
                         "exact in the interior, approximate near the image border")
        return "\n".join(lines)


def _lists(value: Any) -> Any:
    return [_lists(v) for v in value] if isinstance(value, (tuple, list)) else value


def _widths_text(widths: tuple) -> str:
    return "/".join("+".join(map(str, w)) if isinstance(w, tuple) else str(w) for w in widths)


# ------------------------------------------------------------------------------------------------ gammas
def _abs_gamma(bn: nn.BatchNorm2d) -> Tensor:
    return bn.weight.detach().abs().to("cpu", torch.float64)


def _cbr_gamma(cbr: GOctCBR, scale: int) -> Tensor:
    return _abs_gamma(cbr.norm_act.bns[str(scale)])


def unit_scores(model: CSNet, block_rule: str = "first_or_last") -> dict[tuple[str, int], Tensor]:
    """The ``|gamma|`` score of every prunable channel, keyed by ``(layer, scale)``.

    Layers are ``stages.S.B`` (one score per block channel: min of the ``|gamma|`` of its first and last CBR
    for ``block_rule="first_or_last"``, of all three for ``"any"``, the first CBR's for ``"first"``),
    ``fusion.fuse``, ``fusion.dilated`` (in
    concatenation order of the branches) and ``fusion.merge``. Values: float64 tensors on the CPU.
    """
    if block_rule not in BLOCK_RULES:
        raise ValueError(f"block_rule must be one of {BLOCK_RULES}, got {block_rule!r}")
    scores: dict[tuple[str, int], Tensor] = {}
    for ref in model.named_blocks():
        block = ref.block
        for j, width in enumerate(block.out_channels):
            if not width:
                continue
            gammas = [_cbr_gamma(cbr, j) for cbr in (block.conv1, block.conv2, block.conv3)]
            chosen = [gammas[k] for k in _RULE_LAYERS[block_rule]]
            scores[(ref.name, j)] = torch.stack(chosen).amin(0)
    fusion = model.fusion
    for name, cbr in (("fusion.fuse", fusion.fuse), ("fusion.dilated", fusion.dilated),
                      ("fusion.merge", fusion.merge)):
        norm_act = cbr.norm_act
        for key, bn in norm_act.bns.items():
            scores[(name, int(key))] = _abs_gamma(bn)
    return scores


def bn_gammas(model: nn.Module) -> dict[str, Tensor]:
    """``|gamma|`` of every BatchNorm of ``model`` by module name (float64, CPU): what Fig. 6 plots."""
    return {name: _abs_gamma(m) for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}


def _removal(scores: dict[tuple[str, int], Tensor], threshold: Optional[float], ratio: Optional[float]
             ) -> tuple[dict[tuple[str, int], Tensor], Callable[[Tensor], Tensor], float]:
    """Removed masks per unit, the "treat this gamma as 0" test, and the effective threshold."""
    if ratio is None:
        t = float(threshold)
        return {key: score < t for key, score in scores.items()}, (lambda g: g < t), t
    keys = list(scores)
    flat = torch.cat([scores[k] for k in keys])
    n_remove = int(math.floor(ratio * flat.numel() + 1e-9))
    removed_flat = torch.zeros(flat.numel(), dtype=torch.bool)
    if n_remove:
        removed_flat[torch.argsort(flat, stable=True)[:n_remove]] = True
    t_eff = float(flat[removed_flat].max()) if n_remove else 0.0
    removed, offset = {}, 0
    for key in keys:
        n = scores[key].numel()
        removed[key] = removed_flat[offset: offset + n]
        offset += n
    if n_remove:
        return removed, (lambda g: g <= t_eff), t_eff
    return removed, (lambda g: torch.zeros_like(g, dtype=torch.bool)), t_eff


def _keep_minimum(scores: dict[tuple[str, int], Tensor], removed: dict[tuple[str, int], Tensor],
                  min_channels: int) -> list[str]:
    """Give back, in every layer left with fewer than ``min_channels`` channels (all scales together), its
    highest-scoring removed channels; returns the names of the layers that needed it."""
    names = list(dict.fromkeys(name for name, _ in scores))
    topped_up = []
    for name in names:
        keys = [key for key in scores if key[0] == name]
        kept = sum(int((~removed[key]).sum()) for key in keys)
        total = sum(scores[key].numel() for key in keys)
        need = min(min_channels, total) - kept
        if need <= 0:
            continue
        candidates = [(float(scores[key][i]), key, i) for key in keys for i in range(scores[key].numel())
                      if bool(removed[key][i])]
        for _, key, i in sorted(candidates, key=lambda c: -c[0])[:need]:
            removed[key][i] = False
        topped_up.append(name)
    return topped_up


# --------------------------------------------------------------------------------------- small maths
def _bn_eval(bn: nn.BatchNorm2d, x: Tensor) -> Tensor:
    """Eval-mode BN of a per-channel constant ``x`` (float64)."""
    mean = bn.running_mean.detach().to("cpu", torch.float64)
    var = bn.running_var.detach().to("cpu", torch.float64)
    gamma = bn.weight.detach().to("cpu", torch.float64)
    beta = bn.bias.detach().to("cpu", torch.float64)
    return (x - mean) / torch.sqrt(var + bn.eps) * gamma + beta


def _prelu(act: nn.PReLU, x: Tensor) -> Tensor:
    slope = act.weight.detach().to("cpu", torch.float64)
    return torch.where(x >= 0, x, slope * x)


def _norm_act_const(bn: nn.BatchNorm2d, act: nn.PReLU, pre: Tensor, is_zero: Callable[[Tensor], Tensor]) -> Tensor:
    """PReLU(BN(pre)), with BN output ``beta`` where gamma counts as 0 (its input does not matter then)."""
    out = torch.where(is_zero(_abs_gamma(bn)), bn.bias.detach().to("cpu", torch.float64), _bn_eval(bn, pre))
    return _prelu(act, out)


def _weight(conv: nn.Conv2d) -> Tensor:
    return conv.weight.detach().to("cpu", torch.float64)


def _bias(conv: nn.Conv2d) -> Optional[Tensor]:
    return None if conv.bias is None else conv.bias.detach().to("cpu", torch.float64)


# ------------------------------------------------------------------------------------------- the pruner
class _Pruner:
    """Walks the network in forward order, tracking which channels of every feature survive and the
    (interior) constant each removed channel carries, and writes the new state dict."""

    def __init__(self, model: CSNet, removed: dict[tuple[str, int], Tensor],
                 is_zero: Callable[[Tensor], Tensor]) -> None:
        self.model = model
        self.removed = removed
        self.is_zero = is_zero
        self.names = {id(module): name for name, module in model.named_modules()}
        self.state: dict[str, Tensor] = {}
        self.border_folds: list[str] = []

    # ------------------------------------------------------------------------------------------ helpers
    def _put(self, module: nn.Module, field: str, value: Tensor) -> None:
        reference = getattr(module, field)
        self.state[f"{self.names[id(module)]}.{field}"] = value.detach().to("cpu", reference.dtype).contiguous()

    def _border(self, message: str) -> None:
        if message not in self.border_folds:
            self.border_folds.append(message)

    def _incoming(self, conv: GOctConv, feature: _Feature, j: int, name: str) -> tuple[Tensor, bool]:
        """Pre-BN shift that the removed input channels add to output scale ``j`` (float64, ``C_j``), and
        whether any input channel linked to ``j`` survives."""
        shift = torch.zeros(conv.out_channels[j], dtype=torch.float64)
        live = False
        for i, jj in conv.links:
            if jj != j:
                continue
            keep, value = feature[i]
            live = live or bool(keep.any())
            dropped = ~keep
            if dropped.any():
                weight = _weight(conv.link_conv((i, j)))
                contribution = weight[:, dropped].sum(dim=(2, 3)) @ value[dropped]
                shift += contribution
                if conv.kernel_size > 1 and bool((value[dropped] != 0).any()):
                    self._border(f"{name} ({conv.kernel_size}x{conv.kernel_size} conv, zero padding)")
        return shift, live

    def _link_weights(self, conv: GOctConv, feature: _Feature, keep_out: Sequence[Optional[Tensor]]) -> None:
        """Copy the surviving block of every link ``(i, j)`` of a full (groups=1) gOctConv."""
        for i, j in conv.links:
            keep_in = feature[i][0]
            if keep_out[j] is None or not keep_out[j].any() or not keep_in.any():
                continue
            link = conv.link_conv((i, j))
            if link.groups != 1:
                raise PruneError(f"{self.names[id(conv)]}: pruning grouped links is not supported")
            self._put(link, "weight", link.weight.detach()[keep_out[j]][:, keep_in])
            if link.bias is not None:
                self._put(link, "bias", link.bias.detach()[keep_out[j]])

    def _norm_act(self, cbr_norm_act: nn.Module, j: int, keep: Tensor, mean_shift: Optional[Tensor] = None) -> None:
        bn, act = cbr_norm_act.bns[str(j)], cbr_norm_act.acts[str(j)]
        for field in ("weight", "bias", "running_var"):
            self._put(bn, field, getattr(bn, field).detach()[keep])
        mean = bn.running_mean.detach().to("cpu", torch.float64)
        if mean_shift is not None:
            # BN(x + d) with running mean m is BN(x) with running mean m - d
            mean = mean - mean_shift
        self._put(bn, "running_mean", mean[keep])
        self._put(bn, "num_batches_tracked", bn.num_batches_tracked.detach().clone())
        slope = act.weight.detach()
        self._put(act, "weight", slope[keep] if slope.numel() == keep.numel() else slope)

    # --------------------------------------------------------------------------------------- the layers
    def block(self, name: str, block: ILBlock, feature: _Feature) -> tuple[_Feature, tuple[int, ...]]:
        """One ILBlock: returns its output feature and its new per-scale widths."""
        out: _Feature = []
        keep_out: list[Optional[Tensor]] = []
        for j, width in enumerate(block.out_channels):
            if not width:
                out.append(None)
                keep_out.append(None)
                continue
            shift, live = self._incoming(block.conv1.conv, feature, j, f"{name}.conv1")
            bias = sum((_bias(block.conv1.conv.link_conv(link)) for link in block.conv1.conv.links
                        if link[1] == j and block.conv1.conv.link_conv(link).bias is not None),
                       torch.zeros(width, dtype=torch.float64))
            removed = self.removed[(name, j)].clone()
            if not live:
                removed[:] = True
            # constant carried by each removed channel through the three CBRs: it restarts at every BN whose
            # gamma counts as 0 and otherwise flows through the depthwise kernels (sum of the kernel)
            value = _norm_act_const(block.conv1.norm_act.bns[str(j)], block.conv1.norm_act.acts[str(j)],
                                    shift + bias, self.is_zero)
            restarted = self.is_zero(_cbr_gamma(block.conv1, j)) | ~torch.tensor(live).expand(width)
            for index, cbr in enumerate((block.conv2, block.conv3), start=2):
                kernel_sum = _weight(cbr.conv.link_conv((j, j))).sum(dim=(1, 2, 3))
                value = _norm_act_const(cbr.norm_act.bns[str(j)], cbr.norm_act.acts[str(j)], value * kernel_sum,
                                        self.is_zero)
                zero_here = self.is_zero(_cbr_gamma(cbr, j))
                if bool((removed & ~zero_here & restarted).any()):
                    self._border(f"{name}.conv{index} (3x3 depthwise of a constant channel, zero padding)")
                restarted = restarted | zero_here
            keep = ~removed
            if keep.any():  # else the scale vanishes with all its modules
                self._norm_act(block.conv1.norm_act, j, keep, mean_shift=shift)
                for cbr in (block.conv2, block.conv3):
                    link = cbr.conv.link_conv((j, j))
                    self._put(link, "weight", link.weight.detach()[keep])
                    self._norm_act(cbr.norm_act, j, keep)
            out.append((keep, torch.where(keep, torch.zeros_like(value), value)))
            keep_out.append(keep)
        self._link_weights(block.conv1.conv, feature, keep_out)
        widths = tuple(0 if k is None else int(k.sum()) for k in keep_out)
        if not any(widths):
            raise PruneError(f"pruning would remove every channel of {name} (its output would be constant); "
                             "use a lower threshold or ratio")
        return out, widths

    def cbr(self, name: str, cbr: GOctCBR, feature: _Feature) -> tuple[_Feature, tuple[int, ...]]:
        """A 1x1 gOctConv CBR of the CSF (fuse or merge)."""
        out: _Feature = []
        keep_out: list[Optional[Tensor]] = []
        for j, width in enumerate(cbr.out_channels):
            if not width:
                out.append(None)
                keep_out.append(None)
                continue
            shift, live = self._incoming(cbr.conv, feature, j, name)
            removed = self.removed[(name, j)].clone()
            if not live:
                removed[:] = True
            value = _norm_act_const(cbr.norm_act.bns[str(j)], cbr.norm_act.acts[str(j)], shift, self.is_zero)
            keep = ~removed
            if keep.any():
                self._norm_act(cbr.norm_act, j, keep, mean_shift=shift)
            out.append((keep, torch.where(keep, torch.zeros_like(value), value)))
            keep_out.append(keep)
        self._link_weights(cbr.conv, feature, keep_out)
        return out, tuple(0 if k is None else int(k.sum()) for k in keep_out)

    def dilated(self, name: str, module: nn.Module, feature: _Feature) -> tuple[_Feature, tuple[tuple[int, ...], ...]]:
        """The CSF's parallel dilated convs: per scale, branches concatenated, then one BN + PReLU."""
        out: _Feature = []
        widths: list[tuple[int, ...]] = []
        for i, row in enumerate(module.widths):
            total = sum(row)
            if not total:
                out.append(None)
                widths.append(tuple(0 for _ in row))
                continue
            if feature[i] is None:
                raise PruneError(f"{name}: scale {i} has dilated branches but no input")
            keep_in, value_in = feature[i]
            dropped = ~keep_in
            shifts = []
            for branch, branch_width, dilation in zip(module.branches, row, module.dilations):
                if not branch_width:
                    continue
                shift = torch.zeros(branch_width, dtype=torch.float64)
                if dropped.any():
                    shift = _weight(branch.link_conv((i, i)))[:, dropped].sum(dim=(2, 3)) @ value_in[dropped]
                    if bool((value_in[dropped] != 0).any()):
                        self._border(f"{name} scale {i} dilation {dilation} (3x3 conv, zero padding {dilation})")
                shifts.append(shift)
            shift = torch.cat(shifts)
            removed = self.removed[(name, i)].clone()
            if not keep_in.any():
                removed[:] = True
            bn, act = module.norm_act.bns[str(i)], module.norm_act.acts[str(i)]
            value = _norm_act_const(bn, act, shift, self.is_zero)
            keep = ~removed
            if keep.any():
                self._norm_act(module.norm_act, i, keep, mean_shift=shift)
            new_row, offset = [], 0
            for branch, branch_width in zip(module.branches, row):
                branch_keep = keep[offset: offset + branch_width]
                offset += branch_width
                new_row.append(int(branch_keep.sum()))
                if branch_width and branch_keep.any() and keep_in.any():
                    link = branch.link_conv((i, i))
                    self._put(link, "weight", link.weight.detach()[branch_keep][:, keep_in])
            widths.append(tuple(new_row))
            out.append((keep, torch.where(keep, torch.zeros_like(value), value)))
        return out, tuple(widths)

    def head(self, head: nn.Conv2d, feature: _Feature) -> None:
        keep, value = feature[0]
        weight = head.weight.detach()
        bias = head.bias.detach().to("cpu", torch.float64)
        dropped = ~keep
        if dropped.any():
            bias = bias + _weight(head)[:, dropped].sum(dim=(2, 3)) @ value[dropped]
        self._put(head, "weight", weight[:, keep])
        self._put(head, "bias", bias)


def prune_model(
    model: CSNet,
    threshold: Optional[float] = None,
    ratio: Optional[float] = None,
    block_rule: str = "first_or_last",
    input_size: tuple[int, int] = (224, 224),
    count_macs: bool = True,
    min_channels: int = 0,
) -> tuple[CSNet, PruneReport]:
    """Remove the channels whose BN ``|gamma|`` is below ``threshold`` (or the ``ratio`` smallest) and rebuild.

    Args:
        model: a :class:`CSNet` (any device, dtype or mode; it is not modified).
        threshold: remove channels with ``|gamma| < threshold``; default :data:`DEFAULT_THRESHOLD` (1e-20).
        ratio: instead, remove the ``floor(ratio * N)`` channels with the smallest score over the whole
            network (supplementary Table 4's fixed-ratio rule), ``0 <= ratio < 1``.
        block_rule: which BNs of a block decide its channel mask: ``"first_or_last"`` (its first or last
            CBR, default), ``"first"`` (the release's rule) or ``"any"`` (also the middle, depthwise CBR; not
            exact near the border, see the module docstring).
        input_size: ``(H, W)`` at which MACs are counted.
        count_macs: count MACs before and after (one forward pass each).
        min_channels: keep at least this many channels (the highest-scoring) in every layer, all its scales
            together, instead of refusing when a layer would lose them all (0: refuse). The channels kept
            this way carry ~nothing, so the layer's output is nearly constant: a training run that killed
            a whole block (plain weight decay at low resolution does) can still be made small.

    Returns:
        ``(pruned, report)``: a new :class:`CSNet` on the model's device and dtype, in the model's mode, with
        the same outputs up to float rounding except in a band along the image border (module docstring),
        and a :class:`PruneReport`.

    Raises:
        ValueError: both or bad ``threshold``/``ratio``, unknown ``block_rule``.
        PruneError: every channel of some feature would go.
    """
    if threshold is not None and ratio is not None:
        raise ValueError("give either threshold or ratio, not both")
    if ratio is None:
        threshold = DEFAULT_THRESHOLD if threshold is None else float(threshold)
        if not (threshold >= 0 and math.isfinite(threshold)):
            raise ValueError(f"threshold must be a finite number >= 0, got {threshold}")
    elif not (0 <= ratio < 1):
        raise ValueError(f"ratio must be in [0, 1), got {ratio}")
    if min_channels < 0:
        raise ValueError(f"min_channels must be >= 0, got {min_channels}")
    if not isinstance(model, CSNet):
        raise TypeError(f"prune_model needs a CSNet, got {type(model).__name__}")

    device = next(model.parameters()).device
    source = model if device.type == "cpu" else copy.deepcopy(model).to("cpu")
    scores = unit_scores(source, block_rule)
    removed, is_zero, t_eff = _removal(scores, threshold, ratio)
    topped_up = _keep_minimum(scores, removed, min_channels) if min_channels else []
    pruner = _Pruner(source, removed, is_zero)
    config = source.config
    layers: list[LayerWidths] = []
    with torch.no_grad():
        feature: _Feature = [(torch.ones(config.in_chans, dtype=torch.bool),
                              torch.zeros(config.in_chans, dtype=torch.float64))]
        stage_blocks: list[list[BlockConfig]] = [[] for _ in config.stages]
        stage_outputs: list[_Feature] = []
        in_widths = tuple(0 if f is None else int(f[0].sum()) for f in feature)
        for ref in source.named_blocks():  # the model's one topology walk, in forward order
            block_config = config.stages[ref.stage][ref.index]
            feature, widths = pruner.block(ref.name, ref.block, feature)
            layers.append(LayerWidths(ref.name, block_config.out_channels, widths))
            stage_blocks[ref.stage].append(BlockConfig(in_widths, widths, stride=block_config.stride,
                                                       kernel_size=block_config.kernel_size))
            in_widths = widths
            if ref.index == len(config.stages[ref.stage]) - 1:  # a stage's last block: what the fusion reads
                stage_outputs.append(feature)
        new_stages = [tuple(blocks) for blocks in stage_blocks]

        fusion = source.fusion
        fused: _Feature = config.fusion_inputs(stage_outputs)
        fuse_out, fuse_widths = pruner.cbr("fusion.fuse", fusion.fuse, fused)
        dilated_out, dilated_widths = pruner.dilated("fusion.dilated", fusion.dilated, fuse_out)
        merge_out, merge_widths = pruner.cbr("fusion.merge", fusion.merge, dilated_out)
        if not merge_widths[0]:
            raise PruneError("pruning would remove every channel of fusion.merge (the output would be constant)")
        pruner.head(source.head, merge_out)
        layers += [
            LayerWidths("fusion.fuse", tuple(config.fusion.fuse_channels), fuse_widths),
            LayerWidths("fusion.dilated", tuple(config.fusion.dilation_channels), dilated_widths),
            LayerWidths("fusion.merge", (config.fusion.out_channels,), merge_widths),
        ]
        new_config = ChannelConfig(
            stages=tuple(new_stages),
            fusion=FusionConfig(stages=config.fusion.stages, fuse_channels=fuse_widths,
                                dilation_channels=dilated_widths, out_channels=merge_widths[0],
                                dilations=config.fusion.dilations),
            in_chans=config.in_chans,
            name=f"{config.name}_pruned" if config.name else "pruned",
        )
        pruned = CSNet(new_config).to(dtype=next(source.parameters()).dtype)
        pruned.load_state_dict(pruner.state, strict=True)
        pruned = pruned.to(device).train(model.training)

    all_scores = torch.cat(list(scores.values()))
    removed_flat = torch.cat([removed[k] for k in scores])
    channels_before = sum(_flat_sum(layer.before) for layer in layers)
    channels_removed = channels_before - sum(_flat_sum(layer.after) for layer in layers)
    macs_before = macs_after = None
    if count_macs:
        macs_before, macs_after = _macs(model, input_size), _macs(pruned, input_size)
    report = PruneReport(
        mode="ratio" if ratio is not None else "threshold",
        threshold=t_eff,
        ratio=ratio,
        block_rule=block_rule,
        params_before=sum(p.numel() for p in model.parameters()),
        params_after=sum(p.numel() for p in pruned.parameters()),
        macs_before=macs_before,
        macs_after=macs_after,
        input_size=tuple(int(v) for v in input_size),
        channels_before=channels_before,
        channels_removed=channels_removed,
        largest_removed_gamma=float(all_scores[removed_flat].max()) if removed_flat.any() else None,
        smallest_kept_gamma=float(all_scores[~removed_flat].min()) if (~removed_flat).any() else None,
        layers=tuple(layers),
        border_folds=tuple(pruner.border_folds),
        config=new_config,
        kept_to_minimum=tuple(topped_up),
    )
    logger.debug("pruned %s: %d of %d channels removed, params %d -> %d", config.name or "model",
                report.channels_removed, report.channels_before, report.params_before, report.params_after)
    return pruned, report


def _flat_sum(widths: tuple) -> int:
    return sum(_flat_sum(w) if isinstance(w, tuple) else int(w) for w in widths)


def _macs(model: CSNet, size: tuple[int, int]) -> int:
    """MACs of one eval-mode forward on the CPU, leaving ``model`` untouched."""
    from csnet.models.summary import count_macs

    if next(model.parameters()).device.type != "cpu" or model.training:
        model = copy.deepcopy(model).to("cpu").eval()
    return int(count_macs(model, tuple(size)))


# ------------------------------------------------------------------------------------------ border band
def border_margin(config: ChannelConfig) -> int:
    """Upper bound, in input pixels, on how far from the image border pruning can change the output.

    Computed as the receptive radius of the network (every kxk conv adds ``dilation * (k // 2)`` pixels of
    its scale, every bilinear upsampling one pixel of its coarse scale, pooling nothing), plus one pixel of
    the coarsest scale: an output pixel farther than this from every border depends on no padded position,
    so its pruned value equals the unpruned one up to float rounding. Assumes an input whose size is a
    multiple of ``config.pad_multiple``.
    """
    last = max(config.fusion.stages)
    base, radius = 1, [0.0]  # stride of scale 0 of the current feature; radius per scale (None = absent)
    widths: tuple[int, ...] = (config.in_chans,)
    max_stride = 1
    stage_outputs = []
    for stage in config.stages[: last + 1]:
        for block in stage:
            if block.stride == 2:
                base *= 2
            half = block.kernel_size // 2
            out = []
            for j, c_out in enumerate(block.out_channels):
                if not c_out:
                    out.append(None)
                    continue
                stride_j = base * 2 ** j
                candidates = []
                for i, c_in in enumerate(widths):
                    if not c_in or radius[i] is None:
                        continue
                    stride_i = base * 2 ** i
                    if i <= j:
                        candidates.append(radius[i] + half * stride_j)
                    else:
                        candidates.append(radius[i] + half * stride_i + stride_i)
                out.append(max(candidates) + 2 * stride_j if candidates else None)
                max_stride = max(max_stride, stride_j)
            radius, widths = out, block.out_channels
        stage_outputs.append((base, radius))
    fused = {}
    for stage, scale in zip(config.fusion.stages, config.fusion_scales):
        stage_base, stage_radius = stage_outputs[stage]
        fused[scale] = (stage_base, stage_radius[0])
    finest = min(b for b, _ in fused.values())
    n_scales = max(fused) + 1
    stride = [finest * 2 ** k for k in range(n_scales)]
    present = {k: r for k, (_, r) in fused.items() if r is not None}
    # fuse (1x1, all links): pooling adds nothing, upsampling one pixel of the coarser scale
    fuse = [max(r + (stride[i] if i > k else 0) for i, r in present.items()) for k in range(n_scales)]
    dilated = [fuse[k] + max(config.fusion.dilations) * stride[k] for k in range(n_scales)]
    merge = max(dilated[k] + (stride[k] if k else 0) for k in range(n_scales))
    max_stride = max(max_stride, stride[-1])
    return int(math.ceil(merge + finest + max_stride))
