"""Generalized OctConv (gOctConv), supplementary Eq. 1 of Gao et al., ECCV 2020 (arXiv 2003.05643).

A multi-scale feature is a tuple with one entry per scale: scale ``k`` holds a ``B x C_k x H/2^k x W/2^k``
tensor, or ``None`` when its width ``C_k`` is 0 (a scale pruned away simply vanishes). Scale 0 is the finest
scale *of that feature*; a stride-2 gOctConv halves the resolution of every scale.

Output scale ``j`` sums the contributions of every linked input scale ``i``:

* ``i == j``: conv at that scale;
* ``i > j`` (input coarser): conv at the input scale, then bilinear upsampling by ``2^(i-j)``;
* ``i < j`` (input finer): max-pooling with kernel = stride = ``2^(j-i)``, then conv.

With ``stride=2`` every input scale is first average-pooled 2x2. Each link is its own ``nn.Conv2d`` (its own
kernel, groups and dilation), so a link can be absent, and vanilla OctConv (all links), the simplified
instance (depthwise, no cross-scale links) and the cross-stage instance (3 scales -> 3 or 1 scales) are all
configurations of :class:`GOctConv`.
"""
from __future__ import annotations

from typing import Iterable, Optional, Sequence, Union

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MultiScale", "GOctConv", "GOctCBR", "ScaleBNPReLU", "Link", "all_links", "same_scale_links"]

MultiScale = tuple[Optional[Tensor], ...]
"""One tensor per scale (``None`` where the scale has width 0); scale k is 2^k times coarser than scale 0."""

Link = tuple[int, int]
"""``(input_scale, output_scale)``."""


def all_links(in_channels: Sequence[int], out_channels: Sequence[int]) -> list[Link]:
    """Every link between non-empty scales (vanilla OctConv and the cross-stage instance)."""
    return [(i, j) for j, c_out in enumerate(out_channels) if c_out for i, c_in in enumerate(in_channels) if c_in]


def same_scale_links(in_channels: Sequence[int], out_channels: Sequence[int]) -> list[Link]:
    """Only the ``i == j`` links between non-empty scales (the simplified instance)."""
    n = min(len(in_channels), len(out_channels))
    return [(i, i) for i in range(n) if in_channels[i] and out_channels[i]]


def _link_name(link: Link) -> str:
    return f"{link[0]}to{link[1]}"


def output_size(inputs: MultiScale, scale: int) -> tuple[int, int]:
    """Spatial size of ``scale`` implied by the finest present input (floor division when coarsening)."""
    for i, x in enumerate(inputs):
        if x is not None:
            h, w = x.shape[-2], x.shape[-1]
            if scale >= i:
                factor = 2 ** (scale - i)
                return h // factor, w // factor
            factor = 2 ** (i - scale)
            return h * factor, w * factor
    raise ValueError("a multi-scale feature needs at least one non-empty scale")


class GOctConv(nn.Module):
    """The general gOctConv operator: any scales, any links, any kernel, stride 1 or 2, dilation, groups.

    Args:
        in_channels: width of each input scale (0: the scale is absent).
        out_channels: width of each output scale (0: the scale is absent and its output is ``None``).
        kernel_size, dilation: of every link's conv; padding keeps the size (``dilation * (k - 1) // 2``).
        stride: 1, or 2 to average-pool every input scale 2x2 first.
        groups: an int, or ``"depthwise"`` for ``groups = in channels`` of each link.
        links: the ``(input_scale, output_scale)`` pairs present; default all links between non-empty scales
            (``same_scale_links`` when ``groups == "depthwise"``). Links touching a width-0 scale are dropped.
        bias: give each output scale's conv a bias (added once per output scale, on its same-scale link or
            else the first link).

    Shapes:
        input: tuple of ``B x in_channels[k] x H/2^k x W/2^k`` (or ``None`` where ``in_channels[k] == 0``);
        output: tuple of ``B x out_channels[k] x H'/2^k x W'/2^k`` with ``H' = H / stride``.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: Sequence[int],
        kernel_size: int = 1,
        stride: int = 1,
        dilation: int = 1,
        groups: Union[int, str] = 1,
        links: Optional[Iterable[Link]] = None,
        bias: bool = False,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"gOctConv stride must be 1 or 2, got {stride}")
        if any(c < 0 for c in (*in_channels, *out_channels)):
            raise ValueError(f"channel widths must be >= 0, got {in_channels} -> {out_channels}")
        self.in_channels = tuple(int(c) for c in in_channels)
        self.out_channels = tuple(int(c) for c in out_channels)
        self.kernel_size, self.stride, self.dilation = kernel_size, stride, dilation
        self.depthwise = groups == "depthwise"
        if links is None:
            links = (same_scale_links if self.depthwise else all_links)(self.in_channels, self.out_channels)
        kept = []
        for i, j in links:
            if not (0 <= i < len(self.in_channels) and 0 <= j < len(self.out_channels)):
                raise ValueError(f"link {(i, j)} is outside {len(self.in_channels)} -> {len(self.out_channels)} scales")
            if self.in_channels[i] and self.out_channels[j] and (i, j) not in kept:
                kept.append((i, j))
        self.links: tuple[Link, ...] = tuple(sorted(kept, key=lambda link: (link[1], link[0])))

        biased = set()
        if bias:
            for j in {j for _, j in self.links}:
                linked = [link for link in self.links if link[1] == j]
                biased.add((j, j) if (j, j) in linked else linked[0])
        padding = dilation * (kernel_size - 1) // 2
        self.convs = nn.ModuleDict()
        for i, j in self.links:
            c_in, c_out = self.in_channels[i], self.out_channels[j]
            link_groups = c_in if self.depthwise else int(groups)
            if c_in % link_groups or c_out % link_groups:
                raise ValueError(f"link {(i, j)}: widths {c_in} -> {c_out} are not divisible by groups={link_groups}")
            self.convs[_link_name((i, j))] = nn.Conv2d(
                c_in, c_out, kernel_size, padding=padding, dilation=dilation, groups=link_groups,
                bias=(i, j) in biased,
            )

    def link_conv(self, link: Link) -> nn.Conv2d:
        """The conv of one ``(input_scale, output_scale)`` link."""
        return self.convs[_link_name(link)]

    def forward(self, x: MultiScale) -> MultiScale:
        if len(x) != len(self.in_channels):
            raise ValueError(f"gOctConv expects {len(self.in_channels)} scales, got {len(x)}")
        if self.stride == 2:
            x = tuple(None if t is None else F.avg_pool2d(t, 2) for t in x)
        outputs: list[Optional[Tensor]] = [None] * len(self.out_channels)
        for i, j in self.links:
            source = x[i]
            if source is None:
                raise ValueError(f"gOctConv input scale {i} is None but has width {self.in_channels[i]}")
            conv = self.convs[_link_name((i, j))]
            if i < j:
                factor = 2 ** (j - i)
                y = conv(F.max_pool2d(source, kernel_size=factor, stride=factor))
            elif i > j:
                y = F.interpolate(conv(source), size=output_size(x, j), mode="bilinear", align_corners=False)
            else:
                y = conv(source)
            previous = outputs[j]
            outputs[j] = y if previous is None else previous + y
        return tuple(outputs)

    def extra_repr(self) -> str:
        kind = "depthwise, " if self.depthwise else ""
        return (f"{list(self.in_channels)} -> {list(self.out_channels)}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, dilation={self.dilation}, {kind}links={len(self.links)}")


class ScaleBNPReLU(nn.Module):
    """Per-scale BatchNorm2d then per-channel PReLU; width-0 scales pass through as ``None``."""

    def __init__(self, channels: Sequence[int]) -> None:
        super().__init__()
        self.channels = tuple(int(c) for c in channels)
        self.bns = nn.ModuleDict({str(k): nn.BatchNorm2d(c) for k, c in enumerate(self.channels) if c})
        self.acts = nn.ModuleDict({str(k): nn.PReLU(c) for k, c in enumerate(self.channels) if c})

    def forward(self, x: MultiScale) -> MultiScale:
        out: list[Optional[Tensor]] = []
        for k, t in enumerate(x):
            if self.channels[k] == 0 or t is None:
                out.append(None)
            else:
                out.append(self.acts[str(k)](self.bns[str(k)](t)))
        return tuple(out)


class GOctCBR(nn.Module):
    """gOctConv, then BatchNorm and PReLU per output scale (the "CBR" unit of CSNet).

    Takes the same arguments as :class:`GOctConv` (``bias`` is off: BatchNorm follows).
    """

    def __init__(self, in_channels: Sequence[int], out_channels: Sequence[int], **conv_kwargs) -> None:
        super().__init__()
        self.conv = GOctConv(in_channels, out_channels, **conv_kwargs)
        self.norm_act = ScaleBNPReLU(out_channels)

    @property
    def in_channels(self) -> tuple[int, ...]:
        return self.conv.in_channels

    @property
    def out_channels(self) -> tuple[int, ...]:
        return self.conv.out_channels

    def forward(self, x: MultiScale) -> MultiScale:
        return self.norm_act(self.conv(x))
