"""Import the authors' released CSNet checkpoints (``.pth.tar`` + channel config ``.bin``).

The release stores each multi-scale gOctConv as one ``out_total x in_total x k x k`` weight (links are its
blocks) and multiplied the weights of depthwise, dilated and single-scale convs by 100 in forward; the
importer slices the blocks into our per-link convs and folds that factor in, so the imported model is a plain
:class:`CSNet` with no special parametrization. Nothing in either file is executed (:mod:`csnet.io.safe_pickle`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from csnet.io.safe_pickle import load_numpy_pickle, load_torch_checkpoint
from csnet.models.config import BlockConfig, ChannelConfig, FusionConfig
from csnet.models.csnet import CSNet
from csnet.nn import GOctConv

__all__ = ["OfficialImportError", "RELEASE_WEIGHT_GAIN", "read_official_config", "import_official"]

RELEASE_WEIGHT_GAIN = 100.0
"""The release's forward-time factor on depthwise, dilated and single-scale conv weights."""

_STAGE_DEPTHS = (1, 3, 4, 6, 4)


class OfficialImportError(ValueError):
    """The files are not a released CSNet checkpoint/config pair; the message names the file."""


def _widths(value: Any) -> tuple[int, ...]:
    array = np.atleast_1d(np.asarray(value))
    return tuple(int(v) for v in array.reshape(-1))


def read_official_config(path: Union[str, os.PathLike]) -> ChannelConfig:
    """The released channel config (21 rows ``[in_per_scale, out_per_scale]`` + stage depths) as ChannelConfig."""
    rows = load_numpy_pickle(path)
    try:
        depths = tuple(int(d) for d in rows[-1])
        stage_depths = (1, *depths)
        n_blocks = sum(stage_depths)
        if len(rows) != n_blocks + 4:
            raise ValueError(f"expected {n_blocks + 4} rows, got {len(rows)}")
        stages, index = [], 0
        for stage, depth in enumerate(stage_depths):
            blocks = []
            for position in range(depth):
                stride = 2 if position == 0 and stage >= 2 else 1
                blocks.append(BlockConfig(_widths(rows[index][0]), _widths(rows[index][1]), stride=stride,
                                          kernel_size=3 if stage == 0 or stride == 2 else 1))
                index += 1
            stages.append(tuple(blocks))
        fuse_row, dilated_row, merge_row = rows[index], rows[index + 1], rows[index + 2]
        dilation_widths = tuple(tuple(int(v) for v in row) for row in np.asarray(dilated_row[2]))
        fusion = FusionConfig(stages=(2, 3, 4), fuse_channels=_widths(fuse_row[1]),
                              dilation_channels=dilation_widths, out_channels=_widths(merge_row[1])[0])
        config = ChannelConfig(stages=tuple(stages), fusion=fusion, name=Path(path).stem)
    except (IndexError, TypeError, ValueError) as error:
        raise OfficialImportError(f"{path}: not a released CSNet channel config ({error})") from None
    if config.fusion_in_channels != _widths(fuse_row[0]):
        raise OfficialImportError(f"{path}: fusion input widths {_widths(fuse_row[0])} do not match the "
                                  f"stage outputs {config.fusion_in_channels}")
    return config


def _offsets(widths: Sequence[int]) -> list[int]:
    return [int(v) for v in np.concatenate([[0], np.cumsum(widths)])]


def _is_single_scale(conv: GOctConv) -> bool:
    return sum(1 for c in conv.in_channels if c) == 1 and sum(1 for c in conv.out_channels if c) == 1


class _Mapper:
    """Copies release tensors into our state dict, checking every shape and that nothing is left over."""

    def __init__(self, release: dict[str, Tensor], source: Path) -> None:
        self.release = {k: v for k, v in release.items() if not k.endswith("num_batches_tracked")}
        self.source = source
        self.state: dict[str, Tensor] = {}

    def take(self, key: str) -> Tensor:
        try:
            return self.release.pop(key).float()
        except KeyError:
            raise OfficialImportError(f"{self.source}: missing tensor {key!r}") from None

    def gooct(self, ours: str, conv: GOctConv, theirs: str, gain: float) -> None:
        """One release conv weight (blocks per link) -> our per-link convs."""
        weight = self.take(theirs) * gain
        in_off, out_off = _offsets(conv.in_channels), _offsets(conv.out_channels)
        depthwise = conv.depthwise
        for i, j in conv.links:
            if depthwise:
                block = weight[out_off[j]: out_off[j + 1]]
            else:
                block = weight[out_off[j]: out_off[j + 1], in_off[i]: in_off[i + 1]]
            self.state[f"{ours}.convs.{i}to{j}.weight"] = block

    def norm_act(self, ours: str, channels: Sequence[int], bn: str, prelu: str) -> None:
        for k, c in enumerate(channels):
            if not c:
                continue
            for field in ("weight", "bias", "running_mean", "running_var"):
                self.state[f"{ours}.bns.{k}.{field}"] = self.take(f"{bn.format(k)}.{field}")
            self.state[f"{ours}.bns.{k}.num_batches_tracked"] = torch.tensor(0)
            self.state[f"{ours}.acts.{k}.weight"] = self.take(f"{prelu.format(k)}.weight")


def _split_per_scale(mapper: _Mapper, ours: str, conv: GOctConv, theirs: str, gain: float) -> None:
    """Depthwise convs are stored per scale in the release (``convs.{k}``)."""
    for i, _ in conv.links:
        mapper.state[f"{ours}.convs.{i}to{i}.weight"] = mapper.take(f"{theirs}.{i}.weight") * gain


def import_official(checkpoint: Union[str, os.PathLike], config: Union[str, os.PathLike]) -> CSNet:
    """Build a :class:`CSNet` from a released ``.pth.tar`` and its ``.bin`` channel config (nothing executed)."""
    checkpoint, config_path = Path(checkpoint), Path(config)
    channel_config = read_official_config(config_path)
    payload = load_torch_checkpoint(checkpoint)
    release = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(release, dict) or not all(isinstance(v, Tensor) for v in release.values()):
        raise OfficialImportError(f"{checkpoint}: no state_dict of tensors found")
    release = {k.removeprefix("module."): v for k, v in release.items()}

    model = CSNet(channel_config)
    mapper = _Mapper(release, checkpoint)
    gain = RELEASE_WEIGHT_GAIN
    for ref in model.named_blocks():
        block, ours, theirs = ref.block, ref.name, f"stage{ref.stage}.{ref.index}"
        first_gain = gain if _is_single_scale(block.conv1.conv) else 1.0
        mapper.gooct(f"{ours}.conv1.conv", block.conv1.conv, f"{theirs}.conv1x1.conv.weight", first_gain)
        mapper.norm_act(f"{ours}.conv1.norm_act", block.out_channels, f"{theirs}.conv1x1.bns.{{}}",
                        f"{theirs}.conv1x1.prelus.{{}}")
        for mine, release_name in (("conv2", "conv3x3_1"), ("conv3", "conv3x3_2")):
            _split_per_scale(mapper, f"{ours}.{mine}.conv", getattr(block, mine).conv,
                             f"{theirs}.{release_name}.convs", gain)
            mapper.norm_act(f"{ours}.{mine}.norm_act", block.out_channels, f"{theirs}.{release_name}.bns.{{}}",
                            f"{theirs}.{release_name}.prelus.{{}}")
    fusion = model.fusion
    for mine, release_name in (("fuse", "fuse"), ("merge", "fuse1x1")):
        cbr = getattr(fusion, mine)
        mapper.gooct(f"fusion.{mine}.conv", cbr.conv, f"oct_fuse.{release_name}.conv.weight",
                     gain if _is_single_scale(cbr.conv) else 1.0)
        mapper.norm_act(f"fusion.{mine}.norm_act", cbr.out_channels, f"oct_fuse.{release_name}.bns.{{}}",
                        f"oct_fuse.{release_name}.prelus.{{}}")
    for d, branch in enumerate(fusion.dilated.branches):
        for i, _ in branch.links:
            mapper.state[f"fusion.dilated.branches.{d}.convs.{i}to{i}.weight"] = (
                mapper.take(f"oct_fuse.ms.convs.{i}.msconv.{d}.weight") * gain)
    mapper.norm_act("fusion.dilated.norm_act", fusion.dilated.out_channels, "oct_fuse.ms.convs.{}.bn",
                    "oct_fuse.ms.convs.{}.prelu")
    mapper.state["head.weight"] = mapper.take("cls_layer.weight")
    mapper.state["head.bias"] = mapper.take("cls_layer.bias")
    if mapper.release:
        raise OfficialImportError(f"{checkpoint}: unexpected tensors {sorted(mapper.release)[:5]} "
                                  f"(is {config_path} the config of this checkpoint?)")
    try:
        model.load_state_dict(mapper.state, strict=True)
    except RuntimeError as error:
        raise OfficialImportError(f"{checkpoint}: tensor shapes do not fit {config_path} "
                                  f"({str(error).splitlines()[1].strip() if len(str(error).splitlines()) > 1 else error})") from None
    return model.eval()
