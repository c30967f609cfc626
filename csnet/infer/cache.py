"""The user cache: what csnet can rebuild but should not rebuild on every start (ONNX exports, compiled models).

Every entry is named by :func:`cache_key`: the model's bytes (weights and config), csnet's and torch's versions,
the code that builds the entry (the fused network and the exporter, hashed, so an edited exporter never meets
its old output) and what the caller adds (the runtime's preset). The cache can be deleted at any time.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
from pathlib import Path
from typing import Callable, Union

from torch import nn

__all__ = ["default_cache_dir", "cache_key", "cached_file"]

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$CSNET_CACHE``, else ``$XDG_CACHE_HOME/csnet``, else ``~/.cache/csnet``."""
    if os.environ.get("CSNET_CACHE"):
        return Path(os.environ["CSNET_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "csnet"


@functools.lru_cache(maxsize=None)
def _builder_digest() -> str:
    """sha256 of the source of the modules that turn a model into a cached export."""
    import csnet.infer.fused
    import csnet.infer.onnx_export

    digest = hashlib.sha256()
    for module in (csnet.infer.fused, csnet.infer.onnx_export):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()


def cache_key(model: nn.Module, *parts: str) -> str:
    """A hex digest naming what is built from ``model`` with ``parts`` (e.g. the runtime's name and preset)."""
    import torch

    import csnet

    digest = hashlib.sha256()
    header = [f"csnet={csnet.__version__}", f"torch={torch.__version__}", f"builder={_builder_digest()}", *parts]
    digest.update(";".join(header).encode())
    config = getattr(model, "config", None)
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
