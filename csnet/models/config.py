"""ChannelConfig: the one description from which every CSNet variant is built.

Widths are per block and per scale (0 = the scale vanishes), so the same dataclass describes CSNet x1, x2,
any width multiplier, the learned "-L" variants and whatever pruning produces. It round-trips through JSON
and is validated on construction.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Sequence

__all__ = ["BlockConfig", "FusionConfig", "ChannelConfig", "csnet_channels", "DEFAULT_STAGE_DEPTHS"]

DEFAULT_STAGE_DEPTHS = (1, 3, 4, 6, 4)
"""Blocks in stages 0..4 (stage 0 is the stem block)."""

DILATIONS = (1, 2, 4, 8, 16)


def _ints(values: Sequence[Any]) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


@dataclass(frozen=True)
class BlockConfig:
    """One ILBlock: a CBR gOctConv ``in_channels -> out_channels`` then two depthwise CBRs at ``out_channels``.

    ``kernel_size`` is that of the first gOctConv (3 for the stem and stride-2 blocks, else 1).
    """

    in_channels: tuple[int, ...]
    out_channels: tuple[int, ...]
    stride: int = 1
    kernel_size: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "in_channels", _ints(self.in_channels))
        object.__setattr__(self, "out_channels", _ints(self.out_channels))
        if self.stride not in (1, 2):
            raise ValueError(f"block stride must be 1 or 2, got {self.stride}")
        if self.kernel_size not in (1, 3):
            raise ValueError(f"block kernel_size must be 1 or 3, got {self.kernel_size}")
        if not self.in_channels or not self.out_channels or any(c < 0 for c in self.in_channels + self.out_channels):
            raise ValueError(f"bad block widths {self.in_channels} -> {self.out_channels}")


@dataclass(frozen=True)
class FusionConfig:
    """Cross-stage fusion (CSF) over the single-scale outputs of ``stages``.

    ``fuse_channels``: per CSF scale, the output of the first 1x1 gOctConv; ``dilation_channels``: per CSF
    scale, the width of each dilated branch (``dilations``); ``out_channels``: the last 1x1 gOctConv, at the
    finest fused scale. CSF scale ``k`` is ``2^k`` times coarser than the finest fused stage.
    """

    stages: tuple[int, ...] = (2, 3, 4)
    fuse_channels: tuple[int, ...] = ()
    dilation_channels: tuple[tuple[int, ...], ...] = ()
    out_channels: int = 0
    dilations: tuple[int, ...] = DILATIONS

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", _ints(self.stages))
        object.__setattr__(self, "fuse_channels", _ints(self.fuse_channels))
        object.__setattr__(self, "dilation_channels", tuple(_ints(row) for row in self.dilation_channels))
        object.__setattr__(self, "dilations", _ints(self.dilations))
        object.__setattr__(self, "out_channels", int(self.out_channels))
        if list(self.stages) != sorted(set(self.stages)) or not self.stages or min(self.stages) < 1:
            raise ValueError(f"fusion stages must be increasing stage indices >= 1, got {self.stages}")
        if len(self.dilation_channels) != len(self.fuse_channels):
            raise ValueError("dilation_channels needs one row per CSF scale")
        for row in self.dilation_channels:
            if len(row) != len(self.dilations):
                raise ValueError(f"each dilation row needs {len(self.dilations)} widths, got {row}")
        if self.out_channels <= 0:
            raise ValueError("fusion out_channels must be positive")

    @property
    def mid_channels(self) -> tuple[int, ...]:
        """Width of each CSF scale after the parallel dilated convs."""
        return tuple(sum(row) for row in self.dilation_channels)


@dataclass(frozen=True)
class ChannelConfig:
    """Every width of a CSNet: the extractor's stages of blocks and the cross-stage fusion."""

    stages: tuple[tuple[BlockConfig, ...], ...]
    fusion: FusionConfig
    in_chans: int = 3
    name: str = ""

    def __post_init__(self) -> None:
        stages = tuple(tuple(b if isinstance(b, BlockConfig) else BlockConfig(**b) for b in s) for s in self.stages)
        object.__setattr__(self, "stages", stages)
        if not isinstance(self.fusion, FusionConfig):
            object.__setattr__(self, "fusion", FusionConfig(**self.fusion))
        self.validate()

    # ----------------------------------------------------------------------------------------------- checks
    def validate(self) -> None:
        blocks = self.blocks
        if not blocks:
            raise ValueError("a ChannelConfig needs at least one block")
        if blocks[0].in_channels != (self.in_chans,):
            raise ValueError(f"the first block must take ({self.in_chans},) channels, got {blocks[0].in_channels}")
        for index, (prev, block) in enumerate(zip(blocks, blocks[1:]), start=1):
            if prev.out_channels != block.in_channels:
                raise ValueError(f"block {index} takes {block.in_channels} but block {index - 1} "
                                 f"gives {prev.out_channels}")
        if max(self.fusion.stages) >= len(self.stages):
            raise ValueError(f"fusion stage {max(self.fusion.stages)} does not exist")
        expected = self.fusion_in_channels
        if len(self.fusion.fuse_channels) != len(expected):
            raise ValueError(f"fusion needs {len(expected)} fuse widths (one per CSF scale), "
                             f"got {self.fusion.fuse_channels}")

    # ---------------------------------------------------------------------------------------- derived facts
    @property
    def blocks(self) -> tuple[BlockConfig, ...]:
        return tuple(b for stage in self.stages for b in stage)

    def stage_stride(self, stage: int) -> int:
        """Downsampling of scale 0 of ``stage``'s output relative to the input image."""
        return _stage_stride(self.stages, stage)

    @property
    def fusion_scales(self) -> tuple[int, ...]:
        """CSF scale index of each fused stage (0 = the finest fused stage)."""
        return _fusion_scales(self.stages, self.fusion.stages)

    @property
    def fusion_in_channels(self) -> tuple[int, ...]:
        """Width of each CSF input scale (scale 0 of each fused stage's output; 0 for gaps)."""
        return _fusion_in_widths(self.stages, self.fusion.stages)

    @property
    def pad_multiple(self) -> int:
        """Inputs are padded to a multiple of this so every scale of every block has an integer size."""
        return max(self.stage_stride(stage) * 2 ** (len(block.out_channels) - 1)
                   for stage in range(len(self.stages)) for block in self.stages[stage])

    # ------------------------------------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (lists, ints, strings)."""
        return json.loads(json.dumps(asdict(self)))

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(asdict(self), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ChannelConfig":
        try:
            return cls(
                stages=tuple(tuple(BlockConfig(**b) for b in stage) for stage in data["stages"]),
                fusion=FusionConfig(**data["fusion"]),
                in_chans=int(data.get("in_chans", 3)),
                name=str(data.get("name", "")),
            )
        except (KeyError, TypeError) as error:
            raise ValueError(f"not a valid ChannelConfig: {error}") from error

    @classmethod
    def from_json(cls, text: str) -> "ChannelConfig":
        return cls.from_dict(json.loads(text))


def _stage_stride(stages: Sequence[Sequence[BlockConfig]], stage: int) -> int:
    stride = 1
    for blocks in stages[: stage + 1]:
        for block in blocks:
            stride *= block.stride
    return stride


def _fusion_scales(stages: Sequence[Sequence[BlockConfig]], fusion_stages: Sequence[int]) -> tuple[int, ...]:
    strides = [_stage_stride(stages, s) for s in fusion_stages]
    scales = []
    for stride in strides:
        ratio, rest = divmod(stride, strides[0])
        if rest or ratio & (ratio - 1):
            raise ValueError("fused stages must sit at power-of-two resolutions of each other")
        scales.append(ratio.bit_length() - 1)
    return tuple(scales)


def _fusion_in_widths(stages: Sequence[Sequence[BlockConfig]], fusion_stages: Sequence[int]) -> tuple[int, ...]:
    scales = _fusion_scales(stages, fusion_stages)
    widths = [0] * (max(scales) + 1)
    for stage, scale in zip(fusion_stages, scales):
        widths[scale] = stages[stage][-1].out_channels[0]
    return tuple(widths)


def _split_even(total: int, parts: int) -> tuple[int, ...]:
    """``parts`` equal widths, the remainder going to the last one (13 -> 2,2,2,2,5)."""
    base = total // parts
    return tuple([base] * (parts - 1) + [total - base * (parts - 1)])


def csnet_channels(
    width: float = 1.0,
    fusion_stages: Sequence[int] = (2, 3, 4),
    stage_depths: Sequence[int] = DEFAULT_STAGE_DEPTHS,
    name: str = "",
) -> ChannelConfig:
    """The hand-designed CSNet widths (SPEC 2) multiplied by ``width`` (x1: base 20, x2: base 40, any float).

    High/low scales split evenly. The last block of every stage from 2 on, and of any fused stage, outputs
    only its finer scale; CSF widths are a third of each input, split evenly over the five dilations.
    """
    if width <= 0:
        raise ValueError(f"width multiplier must be positive, got {width}")
    fusion_stages = tuple(int(s) for s in fusion_stages)

    def w(base: int) -> int:
        return max(1, int(round(base * width)))

    half = {0: w(10), 1: w(10), 2: w(20), 3: w(40), 4: w(40)}  # per-scale width inside each stage
    single = {1: w(20), 2: w(40), 3: w(80), 4: w(80)}  # width of a stage's single-scale output
    stages: list[tuple[BlockConfig, ...]] = []
    previous: tuple[int, ...] = (3,)
    for stage, depth in enumerate(stage_depths):
        blocks = []
        for index in range(depth):
            first = index == 0
            stride = 2 if first and stage >= 2 else 1
            kernel = 3 if (stage == 0 or stride == 2) else 1
            last = index == depth - 1
            ends_single = last and stage >= 1 and (stage >= 2 or stage in fusion_stages)
            out = (single[stage],) if ends_single else (half[stage], half[stage])
            blocks.append(BlockConfig(previous, out, stride=stride, kernel_size=kernel))
            previous = out
        stages.append(tuple(blocks))
    in_widths = _fusion_in_widths(stages, fusion_stages)
    fuse = tuple(c // 3 for c in in_widths)
    fusion = FusionConfig(
        stages=fusion_stages,
        fuse_channels=fuse,
        dilation_channels=tuple(_split_even(c, len(DILATIONS)) if c else (0,) * len(DILATIONS) for c in fuse),
        out_channels=sum(fuse),
    )
    return ChannelConfig(stages=tuple(stages), fusion=fusion, name=name)
