"""The user cache: what csnet can rebuild but should not rebuild on every start (ONNX exports, compiled models).

Everything in it is keyed by :func:`model_key`, so a changed model, config or library version never meets a
stale entry, and it can be deleted at any time.
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Callable, Union

from torch import nn

__all__ = ["default_cache_dir", "model_key", "cached_file"]

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$CSNET_CACHE``, else ``$XDG_CACHE_HOME/csnet``, else ``~/.cache/csnet``."""
    if os.environ.get("CSNET_CACHE"):
        return Path(os.environ["CSNET_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "csnet"


def model_key(model: nn.Module, *parts: str) -> str:
    """A hex digest of the model's config and weights, the torch version and ``parts`` (what was built from it)."""
    import torch

    digest = hashlib.sha256()
    config = getattr(model, "config", None)
    digest.update(f"torch={torch.__version__};{';'.join(parts)};".encode())
    digest.update(config.to_json().encode() if config is not None else type(model).__name__.encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def cached_file(path: Path, make: Callable[[], bytes]) -> Union[Path, bytes]:
    """``path``, holding ``make()``'s bytes (made and written atomically the first time); the bytes themselves
    when ``path`` cannot be written (an unwritable cache is not an error: the caller runs from memory)."""
    if path.is_file():
        return path
    data = make()
    try:
        from csnet.io.atomic import atomic_write_bytes

        atomic_write_bytes(path, data)
    except OSError as error:
        log.debug("cannot write the cache %s (%s)", path, error)
        return data
    log.debug("cached %s", path)
    return path
