"""CSNet: "Highly Efficient Salient Object Detection with 100K Parameters" (Gao et al., ECCV 2020).

Paper: https://arxiv.org/abs/2003.05643. The network is an extractor of ILBlocks over two scales per stage,
then cross-stage fusion (CSF): a gOctConv over the single-scale outputs of stages 2-4, parallel dilated convs
per scale, a gOctConv back to the finest fused scale, and a 1x1 conv to one logit channel.

Every variant is built from a :class:`~csnet.models.config.ChannelConfig`; the registered entrypoints at the
bottom of this file are three lines each.
"""
from __future__ import annotations

from typing import Iterator, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from csnet.models.config import ChannelConfig, FusionConfig, csnet_channels
from csnet.models.registry import register_model
from csnet.nn import GOctCBR, GOctConv, MultiScale, ScaleBNPReLU, same_scale_links

__all__ = ["ILBlock", "CrossStageFusion", "CSNet", "BlockRef"]


class ILBlock(nn.Module):
    """Interweaved-and-lightweight block: a CBR gOctConv (vanilla OctConv links) then two simplified
    (3x3 depthwise, same-scale only) CBR gOctConvs. No residual.

    Shapes: tuple of ``B x in[k] x H/2^k x W/2^k`` -> tuple of ``B x out[k] x H'/2^k x W'/2^k``,
    ``H' = H / stride``.
    """

    def __init__(self, in_channels: tuple[int, ...], out_channels: tuple[int, ...], kernel_size: int = 1,
                 stride: int = 1) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.stride = tuple(in_channels), tuple(out_channels), stride
        self.conv1 = GOctCBR(in_channels, out_channels, kernel_size=kernel_size, stride=stride)
        self.conv2 = GOctCBR(out_channels, out_channels, kernel_size=3, groups="depthwise")
        self.conv3 = GOctCBR(out_channels, out_channels, kernel_size=3, groups="depthwise")

    def forward(self, x: MultiScale) -> MultiScale:
        return self.conv3(self.conv2(self.conv1(x)))


class ParallelDilatedConvs(nn.Module):
    """Per scale, 3x3 convs with several dilations side by side, concatenated, then BatchNorm and PReLU.

    Each dilation is a same-scale gOctConv; a branch of width 0 is absent.
    Shapes: tuple of ``B x in[k] x h_k x w_k`` -> tuple of ``B x sum(widths[k]) x h_k x w_k``.
    """

    def __init__(self, in_channels: tuple[int, ...], widths: tuple[tuple[int, ...], ...],
                 dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.in_channels, self.widths, self.dilations = tuple(in_channels), widths, tuple(dilations)
        self.out_channels = tuple(sum(row) for row in widths)
        self.branches = nn.ModuleList()
        for index, dilation in enumerate(dilations):
            branch_out = tuple(row[index] for row in widths)
            self.branches.append(GOctConv(in_channels, branch_out, kernel_size=3, dilation=dilation,
                                          links=same_scale_links(in_channels, branch_out)))
        self.norm_act = ScaleBNPReLU(self.out_channels)

    def forward(self, x: MultiScale) -> MultiScale:
        per_branch = [branch(x) for branch in self.branches]
        merged: list[Optional[Tensor]] = []
        for scale in range(len(self.out_channels)):
            parts = [out[scale] for out in per_branch if out[scale] is not None]
            merged.append(torch.cat(parts, dim=1) if parts else None)
        return self.norm_act(tuple(merged))


class CrossStageFusion(nn.Module):
    """CSF: 1x1 CBR gOctConv over the fused stages' outputs -> parallel dilated convs -> 1x1 CBR gOctConv
    to the finest fused scale.

    Shapes: tuple of ``B x in[k] x h/2^k x w/2^k`` (one scale per fused stage) -> ``B x out x h x w``.
    """

    def __init__(self, in_channels: tuple[int, ...], config: FusionConfig) -> None:
        super().__init__()
        self.in_channels = tuple(in_channels)
        self.fuse = GOctCBR(in_channels, config.fuse_channels, kernel_size=1)
        self.dilated = ParallelDilatedConvs(config.fuse_channels, config.dilation_channels, config.dilations)
        self.merge = GOctCBR(self.dilated.out_channels, (config.out_channels,), kernel_size=1)
        self.out_channels = config.out_channels

    def forward(self, x: MultiScale) -> Tensor:
        (out,) = self.merge(self.dilated(self.fuse(x)))
        assert out is not None
        return out


class BlockRef(NamedTuple):
    """One ILBlock in forward order: where it is and the stride of its output's scale 0."""

    stage: int
    index: int
    block: "ILBlock"
    stride: int  #: downsampling of the block's output scale 0 relative to the (padded) input

    @property
    def name(self) -> str:
        """Its state-dict prefix, ``stages.S.B``."""
        return f"stages.{self.stage}.{self.index}"


class CSNet(nn.Module):
    """CSNet built from a :class:`ChannelConfig`.

    ``forward`` takes ImageNet-normalized images ``B x 3 x H x W`` of any size (padded internally to a
    multiple of ``config.pad_multiple`` by edge replication, then cropped back) and returns saliency logits
    ``B x 1 x H x W``; ``torch.sigmoid`` of them is the saliency map.
    """

    def __init__(self, config: ChannelConfig) -> None:
        super().__init__()
        self.config = config
        self.stages = nn.ModuleList(
            nn.Sequential(*[ILBlock(b.in_channels, b.out_channels, b.kernel_size, b.stride) for b in stage])
            for stage in config.stages
        )
        self.fusion = CrossStageFusion(config.fusion_in_channels, config.fusion)
        self.head = nn.Conv2d(config.fusion.out_channels, 1, kernel_size=1, bias=True)
        self._last_stage = max(config.fusion.stages)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal convs, unit BN weights, zero biases; PReLU keeps its 0.25 slope.

        The head gets a small normal init: fan-out Kaiming on a 1-channel conv would start training from
        logits with a std near 10 and a BCE of ~3.
        """
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.head.weight, std=0.01)

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 4:
            raise ValueError(f"CSNet expects a B x {self.config.in_chans} x H x W tensor, got shape {tuple(x.shape)}")
        if x.shape[1] != self.config.in_chans:
            raise ValueError(f"CSNet expects {self.config.in_chans} input channels, got {x.shape[1]} "
                             f"(shape {tuple(x.shape)})")
        if x.shape[0] == 0:
            raise ValueError("CSNet got an empty batch (batch size 0)")
        if x.shape[2] == 0 or x.shape[3] == 0:
            raise ValueError(f"CSNet got an empty image (shape {tuple(x.shape)})")

    def named_blocks(self, used_only: bool = False) -> Iterator[BlockRef]:
        """Every ILBlock in forward order (``used_only``: only the stages the fusion reads): the one walk of the
        stages that the fused network, pruning and the release importer share."""
        stride = 1
        stages = self.stages[: self._last_stage + 1] if used_only else self.stages
        for s, stage in enumerate(stages):
            for b, block in enumerate(stage):
                stride *= block.stride
                yield BlockRef(s, b, block, stride)

    def forward_features(self, x: Tensor) -> tuple[MultiScale, ...]:
        """Outputs of every stage, each a tuple of per-scale tensors. ``x`` must already be padded."""
        feature: MultiScale = (x,)
        outputs = []
        for stage in self.stages[: self._last_stage + 1]:
            feature = stage(feature)
            outputs.append(feature)
        return tuple(outputs)

    def forward(self, x: Tensor) -> Tensor:
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling()):
            self._check_input(x)
        height, width = x.shape[-2], x.shape[-1]
        pad_h, pad_w = self.config.padding(height, width)
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        stage_outputs = self.forward_features(x)
        logits = self.head(self.fusion(tuple(self.config.fusion_inputs(stage_outputs))))
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        if pad_h or pad_w:
            logits = logits[..., :height, :width]
        return logits


def _hand_designed(width: float, name: str, fusion_stages=(2, 3, 4)) -> CSNet:
    return CSNet(csnet_channels(width, fusion_stages=tuple(fusion_stages), name=name))


@register_model
def csnet(width: float = 1.0, fusion_stages=(2, 3, 4)) -> CSNet:
    """CSNet with any width multiplier (``width=1.8`` for the supplementary's Cityscapes model)."""
    return _hand_designed(width, f"csnet_x{width:g}", fusion_stages)


@register_model
def csnet_x1(fusion_stages=(2, 3, 4)) -> CSNet:
    """CSNet x1 (base width 20): 210,985 parameters."""
    return _hand_designed(1.0, "csnet_x1", fusion_stages)


@register_model
def csnet_x2(fusion_stages=(2, 3, 4)) -> CSNet:
    """CSNet x2 (base width 40): 788,631 parameters; the width DWD training starts from."""
    return _hand_designed(2.0, "csnet_x2", fusion_stages)


@register_model
def csnet_l_x1() -> CSNet:
    """CSNet-L-x1: the learned widths of the released checkpoint, 93,647 parameters."""
    return CSNet(learned_config("csnet_l_x1"))


@register_model
def csnet_l_x2() -> CSNet:
    """CSNet-L-x2: the learned widths of the released checkpoint, 140,894 parameters."""
    return CSNet(learned_config("csnet_l_x2"))


@register_model
def csnet_pascal() -> CSNet:
    """CSNet trained by this project on PASCAL-S + HumanSeg (x2 -> pruned -> fine-tuned; see its WeightInfo)."""
    return CSNet(learned_config("csnet_pascal"))


def learned_config(name: str) -> ChannelConfig:
    """A ChannelConfig shipped as JSON data in ``csnet/models/configs/`` (learned or pruned widths)."""
    from importlib import resources

    text = resources.files("csnet.models").joinpath("configs", f"{name}.json").read_text()
    return ChannelConfig.from_json(text)
