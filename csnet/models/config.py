"""ChannelConfig: the one description from which every CSNet variant is built.

Widths are per block and per scale (0 = the scale vanishes), so the same dataclass describes CSNet x1, x2,
any width multiplier, the learned "-L" variants and whatever pruning produces. It round-trips through JSON
and is validated on construction.
"""
from __future__ import annotations

import json
import numbers
from dataclasses import asdict, dataclass
from typing import Any, Sequence

__all__ = ["BlockConfig", "FusionConfig", "ChannelConfig", "csnet_channels", "DEFAULT_STAGE_DEPTHS"]

DEFAULT_STAGE_DEPTHS = (1, 3, 4, 6, 4)
"""Blocks in stages 0..4 (stage 0 is the stem block)."""

DILATIONS = (1, 2, 4, 8, 16)

# Bounds on what a config may ask for. A model file's config is user input: without them a 2 KB file could
# ask for 16,000-channel widths, infinite or negative widths or dilations, and fail deep inside the network's
# construction (or build gigabytes first). CSNet x2 is at most 80 wide with 2 scales, 18 blocks and dilations
# up to 16; these leave room for far larger variants. The loader (csnet.models.hub) also compares the file's
# tensor shapes with the config before building the network, so what gets allocated is what the file holds.
MAX_WIDTH = 2048
"""Most channels at one scale of one block, of a fused stage, or of the CSF."""
MAX_SCALES = 4
"""Most resolutions per block (each is half the previous one)."""
MAX_BLOCKS = 64
MAX_STAGES = 8
MAX_DILATION = 64
MAX_DILATION_BRANCHES = 16
MAX_IN_CHANS = 16


def _int(value: Any, what: str, low: int, high: int) -> int:
    """``value`` as an int in ``[low, high]``; floats (even 20.0), bools, strings and inf are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{what} must be an integer, got {value!r:.60}")
    number = int(value)
    if not low <= number <= high:
        raise ValueError(f"{what} must be in {low}..{high}, got {number}")
    return number


def _ints(values: Any, what: str, low: int = 0, high: int = MAX_WIDTH, max_len: int = MAX_SCALES,
          min_len: int = 1) -> tuple[int, ...]:
    """A short sequence of bounded ints (see :func:`_int`), as a tuple."""
    if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__len__") or not hasattr(values, "__iter__"):
        raise ValueError(f"{what} must be a list of integers, got {values!r:.60}")
    if not min_len <= len(values) <= max_len:
        raise ValueError(f"{what} must have {min_len}..{max_len} entries, got {len(values)}")
    return tuple(_int(v, what, low, high) for v in values)


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
        object.__setattr__(self, "in_channels", _ints(self.in_channels, "block in_channels"))
        object.__setattr__(self, "out_channels", _ints(self.out_channels, "block out_channels"))
        object.__setattr__(self, "stride", _int(self.stride, "block stride", 1, 2))
        object.__setattr__(self, "kernel_size", _int(self.kernel_size, "block kernel_size", 1, 3))
        if self.kernel_size not in (1, 3):
            raise ValueError(f"block kernel_size must be 1 or 3, got {self.kernel_size}")


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
        object.__setattr__(self, "stages", _ints(self.stages, "fusion stages", 1, MAX_STAGES - 1, MAX_STAGES))
        object.__setattr__(self, "fuse_channels", _ints(self.fuse_channels, "fusion fuse_channels",
                                                        max_len=MAX_STAGES, min_len=0))
        object.__setattr__(self, "dilations", _ints(self.dilations, "fusion dilations", 1, MAX_DILATION,
                                                    MAX_DILATION_BRANCHES))
        rows = self.dilation_channels
        if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence) or len(rows) > MAX_STAGES:
            raise ValueError(f"dilation_channels must be at most {MAX_STAGES} rows of widths")
        object.__setattr__(self, "dilation_channels", tuple(
            _ints(row, "fusion dilation_channels", max_len=MAX_DILATION_BRANCHES) for row in rows))
        object.__setattr__(self, "out_channels", _int(self.out_channels, "fusion out_channels", 1, MAX_WIDTH))
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
        if not isinstance(self.stages, Sequence) or len(self.stages) > MAX_STAGES:
            raise ValueError(f"a ChannelConfig has at most {MAX_STAGES} stages")
        if sum(len(s) if isinstance(s, Sequence) else 1 for s in self.stages) > MAX_BLOCKS:
            raise ValueError(f"a ChannelConfig has at most {MAX_BLOCKS} blocks")
        stages = tuple(tuple(b if isinstance(b, BlockConfig) else BlockConfig(**b) for b in s) for s in self.stages)
        object.__setattr__(self, "stages", stages)
        if not isinstance(self.fusion, FusionConfig):
            object.__setattr__(self, "fusion", FusionConfig(**self.fusion))
        object.__setattr__(self, "in_chans", _int(self.in_chans, "in_chans", 1, MAX_IN_CHANS))
        if not isinstance(self.name, str):
            raise ValueError(f"name must be a string, got {self.name!r:.60}")
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
        empty = [stage for stage in self.fusion.stages if not self.stages[stage]]
        if empty:  # its last block's output is what the fusion takes (found by tests/fuzz)
            raise ValueError(f"fusion stage {empty[0]} has no blocks")
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

    def padding(self, height, width):
        """Rows and columns added at the bottom and right (edge replication) to reach a multiple of
        :attr:`pad_multiple`: the one place the rule is written. Plain arithmetic, so it also works on the
        symbolic sizes of a traced graph (ONNX export)."""
        m = self.pad_multiple
        return (m - height % m) % m, (m - width % m) % m

    def fusion_inputs(self, stage_outputs: Sequence[Sequence]) -> list:
        """The cross-stage fusion's per-scale inputs: scale 0 of each fused stage's output at its CSF scale
        (``None`` where no stage lands). Works on tensors, masks or widths alike."""
        inputs: list = [None] * (max(self.fusion_scales) + 1)
        for stage, scale in zip(self.fusion.stages, self.fusion_scales):
            inputs[scale] = stage_outputs[stage][0]
        return inputs

    # ------------------------------------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (lists, ints, strings)."""
        return json.loads(json.dumps(asdict(self)))

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(asdict(self), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ChannelConfig":
        """Validated config from plain data (the JSON of a model file: untrusted).

        Raises:
            ValueError: one line naming the first problem (a missing key, a wrong type, a width out of bounds).
        """
        try:
            stages = data["stages"]
            if not isinstance(stages, (list, tuple)) or len(stages) > MAX_STAGES:
                raise ValueError(f"stages must be a list of at most {MAX_STAGES} stages")
            if any(not isinstance(stage, (list, tuple)) for stage in stages):
                raise ValueError("each stage must be a list of blocks")
            if sum(map(len, stages)) > MAX_BLOCKS:
                raise ValueError(f"a ChannelConfig has at most {MAX_BLOCKS} blocks")
            return cls(
                stages=tuple(tuple(BlockConfig(**b) for b in stage) for stage in stages),
                fusion=FusionConfig(**data["fusion"]),
                in_chans=data.get("in_chans", 3),
                name=str(data.get("name", ""))[:200],
            )
        except KeyError as error:
            raise ValueError(f"not a valid ChannelConfig: missing {error}") from None
        except (TypeError, AttributeError) as error:
            raise ValueError(f"not a valid ChannelConfig: {error}") from None

    @classmethod
    def from_json(cls, text: str) -> "ChannelConfig":
        try:
            data = json.loads(text)
        except RecursionError:
            raise ValueError("not a valid ChannelConfig: JSON nested too deeply") from None
        except ValueError as error:
            raise ValueError(f"not a valid ChannelConfig: not JSON ({error})") from None
        if not isinstance(data, dict):
            raise ValueError("not a valid ChannelConfig: the JSON is not an object")
        return cls.from_dict(data)


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
