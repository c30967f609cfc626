"""Inference runtimes: one file and one class per runtime, one registry, one interface.

A runtime runs the network and nothing else. It takes a batch of ImageNet-normalized images as a NumPy float32
array ``B x 3 x H x W`` (any ``H, W``) and returns the logits as a NumPy float32 array ``B x 1 x H x W``, exactly
what ``model(x)`` returns (within 1e-4 in float32; tested for every runtime). Resizing, the sigmoid and composing
live in :class:`~csnet.infer.predictor.Predictor`; ``csnet predict``, ``serve``, ``evaluate``, ``export`` and
``benchmark`` all build their runtime with :func:`create_runtime`, so ``csnet benchmark --runtime X`` times the
very call ``csnet predict --runtime X`` makes.

Every runtime has the same constructor, ``Runtime(model, device=, threads=, cache_dir=, preset=)``, where
``preset`` names one of its :attr:`Runtime.presets` (precision and runtime options, e.g. ``"bfloat16"``), and
``available()`` says, without loading anything, whether its package is installed. Adding a runtime is one file
with one class and one line in :data:`RUNTIMES`.

``auto`` tries :data:`AUTO_ORDER` in order and moves on only when a runtime raises :class:`RuntimeUnavailable`
(package missing, wrong device, a model it cannot run); any other error is a bug and is raised.

On the CPU no torch op runs outside the runtime call: torch's OpenMP threads spin for a while after every
parallel op and take the cores from the runtime's own threads (OpenVINO's, ONNX Runtime's). Inputs and outputs
are NumPy for that reason, and pre- and postprocessing are NumPy (:mod:`csnet.infer.resize`).

Runtimes are called by one thread at a time (the predictor holds a lock around the call).
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Optional, Union

if TYPE_CHECKING:  # torch is imported when a runtime is built, so the CLI's parsers (and --help) stay light
    import numpy as np
    from torch import nn

__all__ = ["Runtime", "RUNTIMES", "AUTO_ORDER", "DEPRECATED_NAMES", "RuntimeUnavailable", "RuntimeChoiceError",
           "ModelInput", "available_runtimes", "canonical_name", "create_runtime", "runtime_class",
           "resolve_device"]

log = logging.getLogger(__name__)

#: name -> "module:Class" (imported on first use, so a missing optional runtime costs nothing).
RUNTIMES: dict[str, str] = {
    "eager": "csnet.infer.runtimes.eager:EagerRuntime",
    "torchscript": "csnet.infer.runtimes.torchscript:TorchScriptRuntime",
    "compile": "csnet.infer.runtimes.compile:CompileRuntime",
    "onnxruntime": "csnet.infer.runtimes.onnxruntime:OnnxRuntime",
    "openvino": "csnet.infer.runtimes.openvino:OpenVinoRuntime",
    "openvino-int8": "csnet.infer.runtimes.openvino_int8:OpenVinoInt8Runtime",
    "cuda-graph": "csnet.infer.runtimes.cuda_graph:CudaGraphRuntime",
}

AUTO_ORDER: dict[str, tuple[str, ...]] = {
    "cpu": ("openvino", "torchscript", "eager"),  # fastest first (benchmarks/RESULTS.md)
    "cuda": ("eager",),  # the fused runtimes are tested on CUDA but not yet measured there
    "onnx": ("onnxruntime",),  # an .onnx file
}
"""What ``auto`` tries, in order, by device (``"onnx"`` for an ``.onnx`` model file)."""

DEPRECATED_NAMES: dict[str, str] = {"torch": "eager", "fast": "torchscript", "fast-jit": "torchscript"}
"""Names of earlier csnet versions (``--backend``), still accepted with a one-line note."""

ModelInput = Union["nn.Module", str, os.PathLike, bytes]
"""A CSNet module; for ``onnxruntime`` also an ``.onnx`` file (path or bytes)."""


class RuntimeUnavailable(RuntimeError):
    """A runtime that cannot run here: its package is missing, the device lacks it, or the model is not one it
    runs. The only error ``auto`` falls back on."""


class RuntimeChoiceError(ValueError):
    """An unknown runtime or preset name, or a model that the named runtime never runs (one-line message)."""


class Runtime(ABC):
    """Runs the network on a normalized NumPy batch (see the module docstring).

    Args:
        model: a :class:`~csnet.models.CSNet` (left unchanged: runtimes build their own copy), or for the runtimes
            with :attr:`takes_onnx` an ``.onnx`` file.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (already resolved, :func:`resolve_device`).
        threads: CPU threads for runtimes with their own thread pool (``None``: torch's current count); the
            PyTorch runtimes use torch's process-wide count, which the CLI sets.
        cache_dir: where exports and compiled models are kept (:mod:`csnet.infer.cache`); ``None``: in memory.
        preset: one of :attr:`presets` (``None``: :attr:`default_preset`).

    Raises:
        RuntimeUnavailable: see the class. RuntimeChoiceError: an unknown preset.
    """

    name: ClassVar[str] = ""
    package: ClassVar[str] = ""  #: the module that must be importable (empty: always available)
    extra: ClassVar[str] = ""  #: the pip extra that installs it
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")
    presets: ClassVar[Mapping[str, Any]] = {}
    default_preset: ClassVar[str] = "float32"
    takes_onnx: ClassVar[bool] = False
    takes_any_module: ClassVar[bool] = False  #: runs any module with CSNet's signature, not only CSNet

    def __init__(self, model: ModelInput, *, device: str = "cpu", threads: Optional[int] = None,
                 cache_dir: Union[str, os.PathLike, None] = None, preset: Optional[str] = None) -> None:
        from torch import nn

        from csnet.models.csnet import CSNet

        if not self.available():
            raise RuntimeUnavailable(f"the {self.name} runtime needs {self.package}: pip install 'csnet[{self.extra}]'")
        self.device = str(device)
        if self.device.split(":")[0] not in self.devices:
            raise RuntimeUnavailable(f"the {self.name} runtime runs on {' or '.join(self.devices)}, not {self.device}")
        self.preset_name = preset or self.default_preset
        if self.preset_name not in self.presets:
            raise RuntimeChoiceError(f"the {self.name} runtime has no preset {self.preset_name!r}; "
                                     f"presets: {', '.join(self.presets)}")
        self.preset = self.presets[self.preset_name]
        self.threads = threads
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        if isinstance(model, nn.Module):
            if not (self.takes_any_module or isinstance(model, CSNet)):
                raise RuntimeUnavailable(f"the {self.name} runtime runs CSNet models, not {type(model).__name__}")
        elif not self.takes_onnx:
            raise RuntimeChoiceError(f"an .onnx model runs on the onnxruntime runtime, not {self.name!r}")
        self.setup(model)

    @abstractmethod
    def setup(self, model: ModelInput) -> None:
        """Build what :meth:`__call__` runs (export, trace, compile), once."""

    @abstractmethod
    def __call__(self, batch: "np.ndarray") -> "np.ndarray":
        """``B x 3 x H x W`` float32 (normalized) -> ``B x 1 x H x W`` float32 logits."""

    @classmethod
    def available(cls) -> bool:
        """Whether the runtime's package is installed (cheap; never loads a model)."""
        return not cls.package or importlib.util.find_spec(cls.package) is not None

    def describe(self) -> dict[str, Any]:
        return {"runtime": self.name, "device": self.device, "preset": self.preset_name}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self.device!r}, preset={self.preset_name!r})"


@functools.lru_cache(maxsize=None)
def _note_deprecated(old: str, new: str) -> None:
    log.warning("runtime name %r is deprecated; use %r", old, new)


def canonical_name(name: Optional[str]) -> str:
    """``name`` lower-cased, with an old name (:data:`DEPRECATED_NAMES`) replaced, noted once; ``None``: auto."""
    name = (name or "auto").strip().lower()
    if name in DEPRECATED_NAMES:
        _note_deprecated(name, DEPRECATED_NAMES[name])
        return DEPRECATED_NAMES[name]
    return name


def runtime_class(name: str) -> type[Runtime]:
    """The class registered as ``name`` (old names accepted); :class:`RuntimeChoiceError` for an unknown one."""
    name = canonical_name(name)
    try:
        target = RUNTIMES[name]
    except KeyError:
        raise RuntimeChoiceError(f"unknown runtime {name!r}; choose from auto, {', '.join(RUNTIMES)}") from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def available_runtimes() -> list[str]:
    """Names of the runtimes whose package is installed."""
    return [name for name in RUNTIMES if runtime_class(name).available()]


def create_runtime(name: Optional[str], model: ModelInput, *, device: str = "cpu", threads: Optional[int] = None,
                   cache_dir: Union[str, os.PathLike, None] = None, preset: Optional[str] = None) -> Runtime:
    """The runtime ``name`` (``"auto"``: the first of :data:`AUTO_ORDER` that is available) for ``model``.

    ``preset`` belongs to one runtime, so it needs a named one; ``auto`` builds each runtime's default.

    Raises:
        RuntimeUnavailable: the named runtime (or, for auto, every runtime in the order) cannot run here.
        RuntimeChoiceError: an unknown runtime or preset, or a preset with ``auto``.
    """
    from torch import nn

    name = canonical_name(name)
    if preset is not None and name == "auto":
        raise RuntimeChoiceError(f"preset {preset!r} applies to one runtime: name it (--runtime, or runtime= in "
                                 "Python) instead of auto")
    onnx_file = not isinstance(model, nn.Module)
    if name != "auto":
        return runtime_class(name)(model, device=device, threads=threads, cache_dir=cache_dir, preset=preset)
    order = AUTO_ORDER["onnx" if onnx_file else device.split(":")[0]]
    reasons = []
    for candidate in order:
        try:
            return runtime_class(candidate)(model, device=device, threads=threads, cache_dir=cache_dir)
        except RuntimeUnavailable as error:
            log.info("%s runtime unavailable (%s); trying the next one", candidate, error)
            reasons.append(str(error))
    raise RuntimeUnavailable("no runtime can run this model here: " + "; ".join(reasons))


def resolve_device(device: Optional[str]) -> str:
    """``"auto"`` -> ``"cuda"`` when a CUDA device is usable, else ``"cpu"``; checks ``"cuda"`` exists."""
    import torch

    device = (device or "auto").lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeUnavailable(f"device {device!r} requested but CUDA is not available "
                                     f"(torch {torch.__version__}); use --device cpu")
        return device
    raise RuntimeChoiceError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")
