"""Inference backends: one small class per runtime behind one interface.

A backend runs the network and nothing else. It takes a batch of ImageNet-normalized images as a
float32 array ``B x 3 x S x S`` and returns the logits as a float32 array ``B x 1 x S x S``,
exactly what ``model(x)`` returns. Resizing, the sigmoid and composing live in
:class:`~csnet.infer.predictor.Predictor`, so a new runtime (a fused GPU path, TensorRT, ...) is
one file with one class: subclass :class:`Backend`, implement ``__call__``, and add a line to
:data:`BACKENDS`.

Backends are called by one thread at a time (the predictor holds a lock around the call).
"""
from __future__ import annotations

import importlib
import logging
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

__all__ = ["Backend", "BACKENDS", "BackendError", "available_backends", "backend_class", "resolve_device"]

log = logging.getLogger(__name__)

#: name -> "module:Class" (imported on first use, so a missing optional runtime costs nothing).
BACKENDS: dict[str, str] = {
    "torch": "csnet.infer.backends.torch_backend:TorchBackend",
    "fast": "csnet.infer.backends.fast_backend:FastBackend",
    "onnxruntime": "csnet.infer.backends.onnxruntime_backend:OnnxRuntimeBackend",
    "openvino": "csnet.infer.backends.openvino_backend:OpenVinoBackend",
}


class BackendError(RuntimeError):
    """A backend that cannot run here (runtime not installed, device missing, model unsupported)."""


class Backend(ABC):
    """Runs the network on a normalized batch.

    Attributes:
        name: the backend's name in :data:`BACKENDS`.
        device: where it runs, ``"cpu"`` or ``"cuda"`` / ``"cuda:N"``.
    """

    name: str = ""
    device: str = "cpu"

    @abstractmethod
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """``B x 3 x S x S`` float32 (normalized) -> ``B x 1 x S x S`` float32 logits."""

    @classmethod
    def available(cls) -> bool:
        """Whether the runtime is installed (cheap; never loads a model)."""
        return True

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "device": self.device}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self.device!r})"


def backend_class(name: str) -> type[Backend]:
    """The class registered as ``name``; :class:`BackendError` for an unknown name."""
    try:
        target = BACKENDS[name]
    except KeyError:
        raise BackendError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}") from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def available_backends() -> list[str]:
    """Names of the backends whose runtime is installed."""
    return [name for name in BACKENDS if backend_class(name).available()]


def resolve_device(device: str | None) -> str:
    """``"auto"`` -> ``"cuda"`` when a CUDA device is usable, else ``"cpu"``; checks ``"cuda"`` exists."""
    import torch

    device = (device or "auto").lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BackendError(f"device {device!r} requested but CUDA is not available "
                               f"(torch {torch.__version__}); use --device cpu")
        return device
    raise BackendError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")
