"""The fused CSNet: the same network rebuilt once, for inference, as a short straight line of folded ops.

:func:`optimize_for_inference` turns a trained :class:`~csnet.models.CSNet` into a :class:`FusedCSNet` with the
same forward contract (``B x 3 x H x W`` ImageNet-normalized images of any size -> ``B x 1 x H x W`` logits, in
the input's dtype) and the same outputs: in fp32 within 1e-4 on the logits (tested on every registered model
and on the released weights). In fp16/bf16 CSNet itself is not robust (the released CSNet-L-x2 run unfused in
bf16 is off by up to 0.14 on some pixels); the fused network is held to no worse than that. What changes:

* every BatchNorm is folded into the conv(s) in front of it (scale into the weights, shift into one bias);
* the links of a gOctConv are merged: for each resolution ``r`` one conv reads the concatenation of every input
  linked to ``r`` at that resolution (``r`` itself and the max-pooled finer scales) and writes, in one call,
  output ``r`` *and* the contributions of ``r`` to every finer output (which are then upsampled), so a
  two-scale 1x1 gOctConv is 2 convs instead of 4;
* the 1x1 gOctConv that merges the cross-stage fusion back to one scale upsamples its coarse *inputs* instead
  of its (wider) outputs, and concatenates them into one conv (a 1x1 conv commutes with bilinear upsampling);
* the per-scale Python loops run once, at build time: the core is traced with ``torch.fx`` into straight-line
  code (one line per op, see ``FusedCSNet.core.code``), which ``torch.jit.trace``, ``torch.compile`` and the ONNX
  exporter all take as it is;
* parameters become buffers (no autograd bookkeeping), optionally in ``channels_last`` and fp16/bf16.
* folded values too small to matter in float32 become exact zeros (:func:`flush_negligible`: dead channels
  otherwise fill the forward with slow subnormal floats).

This is the one fused network every runtime runs (:mod:`csnet.infer.runtimes`) and ``csnet export`` writes
(:mod:`csnet.infer.onnx_export`); :data:`VARIANTS` names the few build options a runtime needs, so no call
site spells them out. Padding to a multiple of 16 and cropping back stay outside the traced core, so the core
only ever sees sizes it divides exactly (every upsampling is an exact power-of-two ``scale_factor``).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from csnet.models.csnet import CSNet, CrossStageFusion, ParallelDilatedConvs
from csnet.nn.goct import GOctCBR, GOctConv, ScaleBNPReLU

__all__ = [
    "FusedCSNet",
    "VARIANTS",
    "fuse",
    "optimize_for_inference",
    "fold_batch_norm",
    "flush_negligible",
    "randomize_batch_norm",
    "resolve_dtype",
]

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

_NHWC_TRICK_MAX_STRIDE = 2
"""The tiled PReLU and strided max-pool views are used on tensors at strides 1 and 2 of the input only: below
that (<= 56 x 56 at 224) the plain op is as fast and the extra view ops (~2 us each) are pure overhead."""


# --------------------------------------------------------------------------------------------- BN folding
NEGLIGIBLE = torch.finfo(torch.float32).eps
"""A folded weight, bias or slope smaller than this times its tensor's largest magnitude is set to zero."""


def flush_negligible(value: Tensor) -> Tensor:
    """``value`` with every entry below :data:`NEGLIGIBLE` times ``value.abs().max()`` set to exactly zero.

    Why: weight decay shrinks the weights of channels the network stopped using geometrically toward zero
    without reaching it (in a pruned model, a large share of its values). Such a channel's
    activations are then tiny too, and their products with other tiny values land in float32's subnormal
    range, which x86 CPUs compute on a slow microcode path: the whole forward runs several times slower
    (measured in benchmarks/RESULTS.md, run Q). An entry below the last bit of its tensor's largest one cannot
    change the network's float32 output beyond rounding, while zero is exact and fast. Flushing the
    *weights* keeps the fix inside the fused network; the alternative, the CPU's flush-to-zero mode, is a
    per-thread setting that would change every other computation in the user's process.
    """
    magnitude = value.abs()
    if magnitude.numel() == 0:
        return value
    return torch.where(magnitude < NEGLIGIBLE * magnitude.max(), torch.zeros_like(value), value)


def fold_batch_norm(bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """``(scale, shift)`` with ``bn(y) == y * scale[:, None, None] + shift[:, None, None]`` in eval mode."""
    if bn.running_var is None or bn.running_mean is None:
        raise ValueError("cannot fold a BatchNorm without running statistics (track_running_stats=False)")
    var = bn.running_var.detach().double()
    scale = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.detach().double()
    shift = -bn.running_mean.detach().double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.detach().double()
    return scale, shift


def randomize_batch_norm(model: nn.Module, generator: Optional[torch.Generator] = None) -> nn.Module:
    """Give every BatchNorm and PReLU random but well-conditioned values (for tests and benchmarks).

    Means in [-0.5, 0.5], variances in [0.5, 2], gammas in [0.5, 1.5], betas in [-0.2, 0.2], PReLU slopes in
    [0, 0.5]: a freshly initialized model has trivial BN statistics, which would hide folding mistakes.
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
                module.running_var.copy_(torch.rand(n, generator=generator) * 1.5 + 0.5)
                if module.weight is not None:
                    module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                    module.bias.copy_((torch.rand(n, generator=generator) - 0.5) * 0.4)
            elif isinstance(module, nn.PReLU):
                module.weight.copy_(torch.rand(module.weight.shape, generator=generator) * 0.5)
    return model


def _bilinear(x: Tensor, factor: int) -> Tensor:
    """The model's upsampling: bilinear by an integer ``factor``, ``align_corners=False``."""
    return F.interpolate(x, scale_factor=float(factor), mode="bilinear", align_corners=False)


# ------------------------------------------------------------------------------------------- fused plan
@dataclass
class _Unit:
    """One fused conv at resolution ``res``: reads ``sources`` (input scales, max-pooled down to ``res``,
    concatenated) and writes ``targets``: ``(output scale, first row, end row)``; an output scale finer than
    ``res`` is upsampled by ``2 ** (res - scale)``."""

    res: int
    sources: list[int]
    targets: list[tuple[int, int, int]]
    weight: str = ""
    bias: str = ""
    groups: int = 1


@dataclass
class _GOctPlan:
    """A folded gOctConv (+ optional per-scale PReLU): ``units`` in order, then per output scale the sum."""

    in_channels: tuple[int, ...]
    n_out: int
    stride: int
    padding: int
    dilation: int
    base_stride: int = 1  # downsampling of output scale 0 relative to the (padded) network input
    units: list[_Unit] = field(default_factory=list)
    prelus: dict[int, tuple[str, int]] = field(default_factory=dict)  # scale -> (slope buffer, tile)


@dataclass
class _DilatedPlan:
    """Per scale: parallel dilated convs, concatenated, then PReLU (BN folded into every branch)."""

    per_scale: dict[int, list[tuple[str, str, int]]] = field(default_factory=dict)  # scale -> (w, b, dilation)
    prelus: dict[int, tuple[str, int]] = field(default_factory=dict)
    n_scales: int = 0
    base_stride: int = 1


@dataclass
class _UpsampledInputsPlan:
    """A 1x1 multi-scale -> one-scale gOctConv with the coarse inputs upsampled first, then one conv."""

    sources: list[int]
    channels: tuple[int, ...]  # input channels per scale
    weight: str
    bias: str
    prelu: tuple[str, int]


class _FusedCore(nn.Module):
    """The padded-input network as folded buffers and a plan; traced by ``torch.fx`` into straight-line code.

    Input: ``B x 3 x H x W`` with H, W multiples of the model's ``pad_multiple``; output: logits of that size.

    With ``cpu_nhwc`` (CPU, channels_last) three ops are replaced by faster equivalents for narrow NHWC
    tensors, all exact: PReLU runs on a ``(-1, C * t)`` view with the slopes tiled ``t`` times (the per-channel
    broadcast over an inner dimension of ~10 channels does not vectorize: 10x slower at 10 x 224 x 224),
    2x2 max-pooling is two ``torch.maximum`` over strided views (8x faster than ``max_pool2d``, which also
    computes indices), and a channel slice is made contiguous before it is upsampled (upsampling the strided
    slice is twice as slow as copying it first). With ``onednn_convs`` (float32 only) convs at strides <= 4 call oneDNN directly (PyTorch
    sends single-threaded 1x1 convs to a slow path). ``t`` is chosen so the view is valid for every input size
    the padding allows.
    """

    def __init__(self, model: CSNet, merge_links: bool = True, upsample_inputs: bool = True,
                 cpu_nhwc: bool = False, onednn_convs: bool = False, upsample_logits: bool = True,
                 upsample_by_deconv: bool = False) -> None:
        super().__init__()
        self.upsample_logits = upsample_logits
        self.upsample_by_deconv = upsample_by_deconv
        self._count = 0
        self.merge_links = merge_links
        self.cpu_nhwc = cpu_nhwc
        self.onednn_convs = onednn_convs
        config = model.config
        self.config = config
        self.pad_multiple = config.pad_multiple
        self.stage_plans: list[list[_GOctPlan]] = []
        for ref in model.named_blocks(used_only=True):
            if ref.index == 0:
                self.stage_plans.append([])
            self.stage_plans[-1] += [self._goct(cbr, ref.stride) for cbr in (ref.block.conv1, ref.block.conv2,
                                                                             ref.block.conv3)]
        fusion: CrossStageFusion = model.fusion
        fusion_stride = config.stage_stride(tuple(config.fusion.stages)[0])
        self.fuse_plan = self._goct(fusion.fuse, fusion_stride)
        self.dilated_plan = self._dilated(fusion.dilated, fusion_stride)
        merge_conv = fusion.merge.conv
        self.merge_plan: Union[_GOctPlan, _UpsampledInputsPlan]
        if upsample_inputs and merge_conv.kernel_size == 1 and merge_conv.stride == 1 and self._merge_ok(merge_conv):
            self.merge_plan = self._upsampled_inputs(fusion.merge, fusion_stride)
        else:
            self.merge_plan = self._goct(fusion.merge, fusion_stride)
        head = model.head
        self.head_weight = self._buffer(head.weight.detach().double())
        self.head_bias = self._buffer(head.bias.detach().double() if head.bias is not None
                                      else torch.zeros(head.out_channels, dtype=torch.float64))
        self.out_factor = fusion_stride
        self.deconv_kernels: dict[int, str] = {}
        if upsample_by_deconv:  # every power-of-two factor the network can ask for
            for factor in (2 ** n for n in range(1, int(math.log2(config.pad_multiple)) + 1)):
                taps = 1.0 - (torch.arange(2 * factor, dtype=torch.float64) + 0.5 - factor).abs() / factor
                self.deconv_kernels[factor] = self._buffer((taps[:, None] * taps[None, :])[None, None])

    # -------------------------------------------------------------------------------------------- build
    def _buffer(self, value: Tensor) -> str:
        name = f"p{self._count}"
        self._count += 1
        self.register_buffer(name, flush_negligible(value).to(torch.float32).contiguous())
        return name

    def _tile(self, channels: int, stride: int) -> int:
        """How many pixels one row of the tiled PReLU view holds (1: plain PReLU).

        A row of ``channels * t`` values is a multiple of 16 floats (one AVX-512 vector) when possible; ``t``
        must divide ``B * h * w`` for every allowed input, and ``h, w`` are multiples of ``pad_multiple / stride``.
        Only at the fine scales: on small tensors the four extra view ops cost more than they save.
        """
        if not self.cpu_nhwc or stride > _NHWC_TRICK_MAX_STRIDE:
            return 1
        side = self.pad_multiple // stride if stride <= self.pad_multiple and self.pad_multiple % stride == 0 else 1
        return math.gcd(side * side, 16 // math.gcd(channels, 16))

    def _prelus(self, norm_act: ScaleBNPReLU, scales: Sequence[int], base_stride: int) -> dict[int, tuple[str, int]]:
        out = {}
        for k in scales:
            act = norm_act.acts[str(k)]
            channels = norm_act.channels[k]
            slope = act.weight.detach().double().reshape(-1).expand(channels)
            tile = self._tile(channels, base_stride * 2 ** k)
            out[k] = (self._buffer(slope.repeat(tile)), tile)
        return out

    @staticmethod
    def _merge_ok(conv: GOctConv) -> bool:
        return not conv.depthwise and all(conv.link_conv(link).groups == 1 for link in conv.links)

    def _goct(self, cbr: GOctCBR, base_stride: int) -> _GOctPlan:
        conv, norm_act = cbr.conv, cbr.norm_act
        n_out = len(conv.out_channels)
        present = [j for j in range(n_out) if any(link[1] == j for link in conv.links)]
        folded = {}
        for j in present:
            folded[j] = fold_batch_norm(norm_act.bns[str(j)])
        plan = _GOctPlan(in_channels=conv.in_channels, n_out=n_out, stride=conv.stride,
                         padding=conv.dilation * (conv.kernel_size - 1) // 2, dilation=conv.dilation,
                         base_stride=base_stride)

        def link_weight(i: int, j: int) -> Tensor:
            return conv.link_conv((i, j)).weight.detach().double() * folded[j][0][:, None, None, None]

        link_bias = {j: torch.zeros(conv.out_channels[j], dtype=torch.float64) for j in present}
        for i, j in conv.links:
            bias = conv.link_conv((i, j)).bias
            if bias is not None:
                link_bias[j] = link_bias[j] + bias.detach().double()
        total_bias = {j: folded[j][0] * link_bias[j] + folded[j][1] for j in present}
        biased: set[int] = set()

        def take_bias(j: int) -> Tensor:
            if j in biased:
                return torch.zeros(conv.out_channels[j], dtype=torch.float64)
            biased.add(j)
            return total_bias[j]

        if self.merge_links and self._merge_ok(conv):
            for r in range(max(n_out, len(plan.in_channels))):
                own = sorted(i for i, j in conv.links if j == r and i <= r)
                extras = sorted((j for i, j in conv.links if i == r and j < r), reverse=True)
                if not own and not extras:
                    continue
                sources = own + ([r] if extras and r not in own else [])
                widths = [conv.in_channels[i] for i in sources]
                offsets = [sum(widths[:n]) for n in range(len(widths) + 1)]
                rows, weights, biases, targets = 0, [], [], []
                for j in ([r] if own else []) + extras:
                    c_out = conv.out_channels[j]
                    block = torch.zeros(c_out, offsets[-1], conv.kernel_size, conv.kernel_size, dtype=torch.float64)
                    for n, i in enumerate(sources):
                        if (i, j) in conv.links and (i == r or j == r):
                            block[:, offsets[n]:offsets[n + 1]] = link_weight(i, j)
                    weights.append(block)
                    biases.append(take_bias(j))
                    targets.append((j, rows, rows + c_out))
                    rows += c_out
                plan.units.append(_Unit(r, sources, targets, self._buffer(torch.cat(weights)),
                                        self._buffer(torch.cat(biases))))
        else:
            # One unit per link (grouped/depthwise convs cannot share a call); same-scale links first.
            for i, j in sorted(conv.links, key=lambda link: (link[0] != link[1], link[1], link[0])):
                c_out = conv.out_channels[j]
                groups = conv.link_conv((i, j)).groups
                plan.units.append(_Unit(max(i, j), [i], [(j, 0, c_out)], self._buffer(link_weight(i, j)),
                                        self._buffer(take_bias(j)), groups))
        plan.prelus = self._prelus(norm_act, present, base_stride)
        return plan

    def _dilated(self, module: ParallelDilatedConvs, base_stride: int) -> _DilatedPlan:
        plan = _DilatedPlan(n_scales=len(module.out_channels), base_stride=base_stride)
        norm_act = module.norm_act
        present = [k for k, c in enumerate(module.out_channels) if c]
        for k in present:
            scale, shift = fold_batch_norm(norm_act.bns[str(k)])
            row, branches = 0, []
            for branch, dilation in zip(module.branches, module.dilations):
                if (k, k) not in branch.links:
                    continue
                conv = branch.link_conv((k, k))
                c_out = conv.out_channels
                s, t = scale[row:row + c_out], shift[row:row + c_out]
                weight = conv.weight.detach().double() * s[:, None, None, None]
                bias = t + (s * conv.bias.detach().double() if conv.bias is not None else 0)
                branches.append((self._buffer(weight), self._buffer(bias), dilation))
                row += c_out
            plan.per_scale[k] = branches
        plan.prelus = self._prelus(norm_act, present, base_stride)
        return plan

    def _upsampled_inputs(self, cbr: GOctCBR, base_stride: int) -> _UpsampledInputsPlan:
        conv, norm_act = cbr.conv, cbr.norm_act
        ((j,),) = {(j,) for _, j in conv.links}
        scale, shift = fold_batch_norm(norm_act.bns[str(j)])
        sources = sorted(i for i, _ in conv.links)
        weight = torch.cat([conv.link_conv((i, j)).weight.detach().double() for i in sources], dim=1)
        bias = torch.zeros(conv.out_channels[j], dtype=torch.float64)
        for i in sources:
            if conv.link_conv((i, j)).bias is not None:
                bias = bias + conv.link_conv((i, j)).bias.detach().double()
        return _UpsampledInputsPlan(
            sources=sources,
            channels=tuple(conv.in_channels),
            weight=self._buffer(weight * scale[:, None, None, None]),
            bias=self._buffer(scale * bias + shift),
            prelu=self._prelus(norm_act, [j], base_stride)[j],
        )

    # ------------------------------------------------------------------------------------------ forward
    def _up(self, t: Tensor, factor: int, channels: int) -> Tensor:
        """Bilinear upsampling by ``factor`` (align_corners=False), optionally as a depthwise transposed conv.

        The transposed-conv form is exact: with the input edge-replicated by one pixel, output ``o`` of a
        stride-``f`` transposed conv with the separable kernel ``w[t] = 1 - |t + 1/2 - f| / f`` (``t < 2f``) and
        padding ``3f/2`` blends the same two inputs with the same weights as the bilinear formula, clamped
        border included. OpenVINO runs it in its conv kernels, faster than its Interpolate.
        """
        if not self.upsample_by_deconv:
            return _bilinear(t, factor)
        kernel = getattr(self, self.deconv_kernels[factor]).expand(channels, 1, 2 * factor, 2 * factor)
        padded = F.pad(t, (1, 1, 1, 1), mode="replicate")
        return F.conv_transpose2d(padded, kernel, None, stride=factor, padding=3 * factor // 2, groups=channels)

    def _act(self, x: Tensor, prelu: tuple[str, int]) -> Tensor:
        name, tile = prelu
        slope = getattr(self, name)
        if tile == 1:
            return F.prelu(x, slope)
        nhwc = x.permute(0, 2, 3, 1)  # a view for channels_last x
        return F.prelu(nhwc.reshape(-1, slope.shape[0]), slope).view_as(nhwc).permute(0, 3, 1, 2)

    def _max_pool(self, x: Tensor, factor: int, channels: int, stride: int) -> Tensor:
        if not self.cpu_nhwc or stride > _NHWC_TRICK_MAX_STRIDE:
            return F.max_pool2d(x, factor, factor)
        while factor > 1:
            nhwc = x.permute(0, 2, 3, 1)
            pairs = nhwc.reshape(nhwc.shape[0], nhwc.shape[1] // 2, 2, nhwc.shape[2] // 2, 2 * channels)
            rows = torch.maximum(pairs[:, :, 0], pairs[:, :, 1])
            x = torch.maximum(rows[..., :channels], rows[..., channels:]).permute(0, 3, 1, 2)
            factor //= 2
        return x

    def _conv(self, x: Tensor, weight: str, bias: str, padding: int, dilation: int, groups: int, stride: int
              ) -> Tensor:
        w, b = getattr(self, weight), getattr(self, bias)
        if self.onednn_convs and stride <= 4:
            return torch.mkldnn_convolution(x, w, b, (padding, padding), (1, 1), (dilation, dilation), groups)
        return F.conv2d(x, w, b, 1, padding, dilation, groups)

    def _run_goct(self, plan: _GOctPlan, xs: list[Optional[Tensor]]) -> list[Optional[Tensor]]:
        if plan.stride == 2:
            xs = [None if t is None else F.avg_pool2d(t, 2) for t in xs]
        direct: dict[int, Tensor] = {}
        upsampled: dict[int, list[Tensor]] = {}
        for unit in plan.units:
            parts = []
            for i in unit.sources:
                t = xs[i]
                assert t is not None
                if i < unit.res:
                    t = self._max_pool(t, 2 ** (unit.res - i), plan.in_channels[i], plan.base_stride * 2 ** i)
                parts.append(t)
            x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
            y = self._conv(x, unit.weight, unit.bias, plan.padding, plan.dilation, unit.groups,
                           plan.base_stride * 2 ** unit.res)
            single = len(unit.targets) == 1
            for j, start, stop in unit.targets:
                part = y if single else y[:, start:stop]
                if j == unit.res:
                    direct[j] = part if j not in direct else direct[j] + part
                else:
                    if self.cpu_nhwc and not single:  # a channel slice of NHWC is strided: 2x slower to upsample
                        part = part.contiguous(memory_format=torch.channels_last)
                    upsampled.setdefault(j, []).append(self._up(part, 2 ** (unit.res - j), stop - start))
        outs: list[Optional[Tensor]] = [None] * plan.n_out
        for j, prelu in plan.prelus.items():
            terms = ([direct[j]] if j in direct else []) + upsampled.get(j, [])
            acc = terms[0]
            for t in terms[1:]:
                acc = acc + t
            outs[j] = self._act(acc, prelu)
        return outs

    def _run_dilated(self, plan: _DilatedPlan, xs: list[Optional[Tensor]]) -> list[Optional[Tensor]]:
        outs: list[Optional[Tensor]] = [None] * plan.n_scales
        for k, branches in plan.per_scale.items():
            x = xs[k]
            stride = plan.base_stride * 2 ** k
            parts = [self._conv(x, w, b, d, d, 1, stride) for w, b, d in branches]
            y = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
            outs[k] = self._act(y, plan.prelus[k])
        return outs

    def _run_upsampled_inputs(self, plan: _UpsampledInputsPlan, xs: list[Optional[Tensor]]) -> Tensor:
        parts = []
        for i in plan.sources:
            t = xs[i]
            assert t is not None
            parts.append(t if i == 0 else self._up(t, 2 ** i, plan.channels[i]))
        x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return self._act(self._conv(x, plan.weight, plan.bias, 0, 1, 1, self.dilated_plan.base_stride), plan.prelu)

    def forward(self, x: Tensor) -> Tensor:
        feature: list[Optional[Tensor]] = [x]
        stage_outputs = []
        for plans in self.stage_plans:
            for plan in plans:
                feature = self._run_goct(plan, feature)
            stage_outputs.append(feature)
        fused = self.config.fusion_inputs(stage_outputs)
        fused = self._run_dilated(self.dilated_plan, self._run_goct(self.fuse_plan, fused))
        if isinstance(self.merge_plan, _UpsampledInputsPlan):
            merged = self._run_upsampled_inputs(self.merge_plan, fused)
        else:
            merged = self._run_goct(self.merge_plan, fused)[0]
            assert merged is not None
        logits = F.conv2d(merged, getattr(self, self.head_weight), getattr(self, self.head_bias))
        if self.upsample_logits and self.out_factor != 1:
            logits = self._up(logits, self.out_factor, 1)
        return logits


# ---------------------------------------------------------------------------------------------- module
class FusedCSNet(nn.Module):
    """A CSNet folded and merged for inference (see the module docstring); build it with
    :func:`optimize_for_inference`.

    ``forward``: ``B x 3 x H x W`` float tensor (any size; ImageNet-normalized) -> ``B x 1 x H x W`` logits in the
    input's dtype. The input is converted to the module's dtype and memory format inside. ``core`` is the
    straight-line ``torch.fx.GraphModule`` that runs on padded inputs; swap it (``torch.jit`` / ``torch.compile``)
    without touching the padding logic. With ``logits_stride`` > 1 the core's logits are that many times smaller
    than its input and :meth:`finish` upsamples them (bilinear, as the model does).
    """

    def __init__(self, core: nn.Module, pad_multiple: int, in_chans: int, dtype: torch.dtype,
                 channels_last: bool, name: str = "", logits_stride: int = 1) -> None:
        super().__init__()
        self.core = core
        self.pad_multiple = pad_multiple
        self.in_chans = in_chans
        self.dtype = dtype
        self.channels_last = channels_last
        self.name = name
        self.logits_stride = logits_stride

    def with_core(self, core: nn.Module) -> "FusedCSNet":
        """The same wrapper (padding, dtype, layout, logits stride) around another runtime of the core."""
        return type(self)(core, self.pad_multiple, self.in_chans, self.dtype, self.channels_last, self.name,
                          self.logits_stride)

    def check_input(self, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"CSNet expects a B x {self.in_chans} x H x W tensor, got shape {tuple(x.shape)}")
        if x.shape[0] == 0 or x.shape[2] == 0 or x.shape[3] == 0:
            raise ValueError(f"CSNet got an empty batch or image (shape {tuple(x.shape)})")

    def padding(self, height: int, width: int) -> tuple[int, int]:
        """Rows and columns added at the bottom and right to reach a multiple of ``pad_multiple`` (the rule of
        :meth:`~csnet.models.ChannelConfig.padding`)."""
        return (-height) % self.pad_multiple, (-width) % self.pad_multiple

    def prepare(self, x: Tensor) -> Tensor:
        """Cast, pad to a multiple of ``pad_multiple`` (edge replication) and set the memory format."""
        pad_h, pad_w = self.padding(x.shape[-2], x.shape[-1])
        if x.dtype != self.dtype:
            x = x.to(self.dtype)
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def finish(self, logits: Tensor, height: int, width: int) -> Tensor:
        """The core's logits -> full-size logits cropped to ``height x width`` (the unpadded input)."""
        if self.logits_stride != 1:
            logits = _bilinear(logits, self.logits_stride)
        if logits.shape[-2] != height or logits.shape[-1] != width:
            logits = logits[..., :height, :width]
        return logits

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        logits = self.finish(self.core(self.prepare(x)), x.shape[-2], x.shape[-1])
        return logits.to(x.dtype) if logits.dtype != x.dtype else logits

    def extra_repr(self) -> str:
        return f"name={self.name!r}, dtype={self.dtype}, channels_last={self.channels_last}"


def resolve_dtype(dtype: Union[str, torch.dtype]) -> torch.dtype:
    """``"float32"``, ``"float16"``, ``"bfloat16"`` (or those dtypes) -> the torch dtype; ValueError otherwise."""
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
        return _DTYPES[dtype]
    if dtype not in _DTYPES.values():
        raise ValueError(f"dtype must be float32, float16 or bfloat16, got {dtype}")
    return dtype


def optimize_for_inference(
    model: CSNet,
    dtype: Union[str, torch.dtype] = torch.float32,
    channels_last: Optional[bool] = None,
    device: Union[str, torch.device, None] = None,
    merge_links: bool = True,
    upsample_inputs: bool = True,
    cpu_kernels: Optional[bool] = None,
    upsample_logits: bool = True,
    upsample_by_deconv: bool = False,
) -> FusedCSNet:
    """The fused network of ``model``: BN folded, gOctConv links merged, straight-line code.

    Args:
        model: a :class:`CSNet` (its eval-mode forward is what is reproduced; the model itself is not changed).
        dtype: float32, float16 or bfloat16 (or their names); the input is cast inside, logits come back in the
            input's dtype.
        channels_last: NHWC activations (default on: with the CPU kernels described in :class:`_FusedCore` it is
            about twice as fast as NCHW on the CPU, and the layout tensor cores want on CUDA). Off for export.
        device: where the buffers live (default: where ``model`` is).
        merge_links: share one conv per resolution across a gOctConv's links (off: one conv per link, folded).
        upsample_inputs: in the last fusion gOctConv, upsample the inputs and run one conv (off: per link).
        cpu_kernels: the NHWC CPU replacements of :class:`_FusedCore` (tiled PReLU, strided max-pool, direct
            oneDNN convs); default: on for channels_last on the CPU. ``torch.compile`` does better without them.
        upsample_logits: the core ends with the head's bilinear upsampling to full size (off: the core returns
            logits at the head's stride and :meth:`FusedCSNet.finish` upsamples them; runtimes that upsample one
            channel badly, like OpenVINO's blocked layouts, export the core without it).
        upsample_by_deconv: every bilinear upsampling as an exact depthwise transposed conv (see
            ``_FusedCore._up``; for OpenVINO, whose conv kernels beat its Interpolate).

    Returns:
        a :class:`FusedCSNet` in eval mode with no parameters (only buffers).
    """
    if not isinstance(model, CSNet):
        raise TypeError(f"optimize_for_inference needs a CSNet, got {type(model).__name__}")
    dtype = resolve_dtype(dtype)
    if device is None:
        device = next(iter(model.parameters())).device
    device = torch.device(device)
    if channels_last is None:
        channels_last = True
    with torch.no_grad():
        cpu_nhwc = channels_last and device.type == "cpu" if cpu_kernels is None else bool(cpu_kernels)
        if cpu_nhwc and not channels_last:
            raise ValueError("cpu_kernels need channels_last=True")
        core = _FusedCore(model, merge_links=merge_links, upsample_inputs=upsample_inputs, cpu_nhwc=cpu_nhwc,
                          onednn_convs=cpu_nhwc and dtype == torch.float32 and torch.backends.mkldnn.is_available(),
                          upsample_logits=upsample_logits, upsample_by_deconv=upsample_by_deconv)
        traced = torch.fx.symbolic_trace(core)
    traced.to(device=device, dtype=dtype)
    fused = FusedCSNet(traced, model.config.pad_multiple, model.config.in_chans, dtype, channels_last,
                       name=model.config.name, logits_stride=1 if upsample_logits else core.out_factor)
    return fused.eval()


VARIANTS: dict[str, dict[str, object]] = {
    # NHWC with the CPU kernels of _FusedCore: the PyTorch runtimes (TorchScript, CUDA graphs)
    "torch": {"channels_last": True},
    # plain ops for inductor to fuse (it does better without the NHWC view tricks)
    "compile": {"channels_last": True, "cpu_kernels": False},
    # NCHW float32: what ONNX and ONNX Runtime take
    "onnx": {"channels_last": False},
    # OpenVINO's CPU plugin: links unmerged (it would split a merged conv's outputs with a slow reference
    # kernel), upsamplings as depthwise transposed convs (its conv kernels beat its Interpolate) and the head's
    # one-channel upsampling left to NumPy (a 1-of-16-channels blocked upsample is slow there)
    "openvino": {"channels_last": False, "merge_links": False, "upsample_logits": False,
                 "upsample_by_deconv": True},
    # OpenVINO in bfloat16: the same but with Interpolate, because on CPUs with AMX its bf16 depthwise transposed
    # conv falls to a general brgconv kernel many times slower than the float32 one
    "openvino-interpolate": {"channels_last": False, "merge_links": False, "upsample_logits": False,
                             "upsample_by_deconv": False},
}
"""The fused network's build options each runtime wants, by name (``optimize_for_inference(model, **VARIANTS[v])``);
measured in ``benchmarks/RESULTS.md``."""


def fuse(model: CSNet, variant: str, dtype: Union[str, torch.dtype] = torch.float32,
         device: Union[str, torch.device, None] = None) -> FusedCSNet:
    """:func:`optimize_for_inference` with the options of :data:`VARIANTS` ``[variant]``."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown fused variant {variant!r}; choose from {', '.join(VARIANTS)}")
    return optimize_for_inference(model, dtype=dtype, device=device, **VARIANTS[variant])  # type: ignore[arg-type]
