"""One file is one model: ``.safetensors`` weights with the ChannelConfig JSON in the file's metadata.

No pickles anywhere: loading a model file can never execute code.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from csnet.io.atomic import atomic_path
from csnet.models.config import ChannelConfig
from csnet.models.csnet import CSNet
from csnet.models.registry import is_model, list_models, model_entrypoint
from csnet.models.weights import PRETRAINED, pretrained_path

__all__ = ["create_model", "load_model", "save_model", "read_metadata", "ModelFileError", "DEFAULT_MODEL"]

FORMAT_VERSION = "1"
MAX_CONFIG_CHARS = 1_000_000
"""Longest config JSON read (CSNet x2's is about 5 KB; the largest config within the bounds of
:mod:`csnet.models.config` is well under this)."""
DEFAULT_MODEL = "csnet_pascal"
"""The model ``csnet predict`` and ``load_model()`` use when none is named: the weights trained here."""


class ModelFileError(ValueError):
    """A model file that is missing, unreadable or not a csnet model; the message names the file."""


def create_model(name: str, pretrained: bool = False, **kwargs) -> CSNet:
    """Build a registered model; ``pretrained=True`` loads the weights bundled for it (strict)."""
    model = model_entrypoint(name)(**kwargs)
    if pretrained:
        if kwargs:
            raise ValueError("pretrained weights fix the architecture; do not pass model arguments")
        path = _verified_pretrained_path(name)
        state = load_file(str(path))
        model.load_state_dict(state, strict=True)
    return model


def save_model(model: CSNet, path: Union[str, os.PathLike], metadata: Optional[dict[str, str]] = None) -> Path:
    """Write ``model`` (weights + ChannelConfig) to one ``.safetensors`` file, atomically."""
    path = Path(path)
    meta = {"format": "csnet", "format_version": FORMAT_VERSION, "config": model.config.to_json()}
    for key, value in (metadata or {}).items():
        meta[str(key)] = value if isinstance(value, str) else json.dumps(value)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return path


def read_metadata(path: Union[str, os.PathLike]) -> dict[str, str]:
    """The metadata dict of a csnet model file."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise ModelFileError(f"{path}: not a readable .safetensors file ({error})") from error
    if meta.get("format") != "csnet" or "config" not in meta:
        raise ModelFileError(f"{path}: not a csnet model file (no csnet config in its metadata)")
    return meta


def load_model(path_or_name: Union[str, os.PathLike, None] = None, device: Union[str, torch.device] = "cpu") -> CSNet:
    """A model in eval mode from a ``.safetensors`` file or a registered name with bundled weights.

    ``None`` gives :data:`DEFAULT_MODEL`.
    """
    target = DEFAULT_MODEL if path_or_name is None else path_or_name
    path = Path(target)
    if not path.is_file():
        name = str(target)
        if name in PRETRAINED:
            path = _verified_pretrained_path(name)
        elif is_model(name):
            raise ModelFileError(f"model {name!r} has no bundled weights; bundled: {', '.join(sorted(PRETRAINED))}")
        else:
            raise ModelFileError(f"{name}: no such file and no such model (models: {', '.join(list_models())})")
    meta = read_metadata(path)
    if len(meta["config"]) > MAX_CONFIG_CHARS:
        raise ModelFileError(f"{path}: bad model config (its JSON is {len(meta['config']):,} characters, over "
                             f"{MAX_CONFIG_CHARS:,})")
    try:
        config = ChannelConfig.from_json(meta["config"])
    except ValueError as error:
        raise ModelFileError(f"{path}: bad model config ({error})") from None
    # Shapes and dtypes first, from the header and a network on the meta device: nothing the file asks for
    # is allocated until its tensors are known to be exactly the ones its config describes.
    _check_header(path, config)
    model = CSNet(config)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise ModelFileError(f"{path}: not a readable .safetensors file ({error})") from None
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelFileError(f"{path}: tensor {key} holds NaN or infinite values")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:  # not expected after _check_header; kept one line all the same
        first = str(error).strip().splitlines()
        raise ModelFileError(f"{path}: weights do not match its config ({first[0] if first else error})") from None
    return model.to(device).eval()


def _verified_pretrained_path(name: str) -> Path:
    """The bundled weight file of ``name``, checked against its ``WeightInfo.sha256`` (a damaged or swapped file
    in an installed package would otherwise give wrong masks without any error)."""
    import hashlib

    path = pretrained_path(name)
    expected = PRETRAINED[name].sha256
    if expected:
        found = hashlib.sha256(path.read_bytes()).hexdigest()
        if found != expected:
            raise ModelFileError(f"{path}: bundled weights of {name!r} are damaged (sha256 {found[:12]}..., "
                                 f"expected {expected[:12]}...); reinstall csnet")
    return path


_FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}
_INT_DTYPES = {"I64", "I32"}


def _check_header(path: Path, config: ChannelConfig) -> None:
    """Compare the file's tensor names, shapes and dtypes (its header only) with what ``config`` builds.

    Raises:
        ModelFileError: naming the first missing, unexpected, mis-shaped or wrongly typed tensor.
    """
    try:
        with torch.device("meta"):  # shapes without storage: a config within its bounds costs nothing here
            expected = CSNet(config).state_dict()
    except (ValueError, RuntimeError, TypeError, IndexError, ZeroDivisionError) as error:
        # a validated config that still describes no network (no fuzzed config has reached this yet)
        raise ModelFileError(f"{path}: bad model config (no network can be built from it: "
                             f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})") from None
    try:
        with safe_open(str(path), framework="pt") as f:
            found = {key: (tuple(f.get_slice(key).get_shape()), f.get_slice(key).get_dtype()) for key in f.keys()}
    except (SafetensorError, OSError) as error:
        raise ModelFileError(f"{path}: not a readable .safetensors file ({error})") from None
    missing = [key for key in expected if key not in found]
    unexpected = [key for key in found if key not in expected]
    if missing:
        raise ModelFileError(f"{path}: weights do not match its config: {missing[0]} is missing "
                             f"({len(missing)} missing in all)")
    if unexpected:
        raise ModelFileError(f"{path}: weights do not match its config: unexpected tensor {unexpected[0]} "
                             f"({len(unexpected)} unexpected in all)")
    for key, want in expected.items():
        shape, dtype = found[key]
        if shape != tuple(want.shape):
            raise ModelFileError(f"{path}: weights do not match its config: {key} is {list(shape)} in the file, "
                                 f"{list(want.shape)} in its config")
        allowed = _FLOAT_DTYPES if want.is_floating_point() else _INT_DTYPES
        if dtype not in allowed:
            kind = "floating-point" if want.is_floating_point() else "integer"
            raise ModelFileError(f"{path}: tensor {key} is {dtype}, expected a {kind} tensor "
                                 f"({', '.join(sorted(allowed))})")
