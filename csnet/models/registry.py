"""Model registry: each entrypoint function registers under its own name (as in timm).

>>> from csnet.models import create_model, list_models
>>> list_models("csnet_l*")            # doctest: +SKIP
['csnet_l_x1', 'csnet_l_x2']
"""
from __future__ import annotations

import fnmatch
from typing import Callable, TypeVar

from torch import nn

__all__ = ["register_model", "list_models", "is_model", "model_entrypoint"]

_ENTRYPOINTS: dict[str, Callable[..., nn.Module]] = {}
F = TypeVar("F", bound=Callable[..., nn.Module])


def register_model(fn: F) -> F:
    """Decorator: register ``fn`` under ``fn.__name__``; a duplicate name is an error."""
    name = fn.__name__
    if name in _ENTRYPOINTS:
        raise ValueError(f"model {name!r} is already registered")
    _ENTRYPOINTS[name] = fn
    return fn


def list_models(pattern: str = "") -> list[str]:
    """Registered model names, sorted, optionally filtered by a shell-style ``pattern``."""
    names = sorted(_ENTRYPOINTS)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def is_model(name: str) -> bool:
    return name in _ENTRYPOINTS


def model_entrypoint(name: str) -> Callable[..., nn.Module]:
    try:
        return _ENTRYPOINTS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(list_models())}") from None
