"""A runner is a runtime of :mod:`csnet.infer.runtimes`, built by :func:`~csnet.infer.runtimes.create_runtime` as
``csnet predict`` builds it, plus the input its call takes, so a benchmark times exactly what predict runs.

``make_input(batch, height, width)`` returns a normalized ``B x 3 x H x W`` float32 NumPy array made beforehand
(only the network is timed: the released implementation's figures are measured that way), or with
``include_preprocess`` a ``B x H x W x 3`` uint8 array that :meth:`Runner.call` normalizes in NumPy inside the
timed call.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from torch import nn

from csnet.constants import IMAGENET_MEAN, IMAGENET_STD
from csnet.infer.runtimes import Runtime, create_runtime

__all__ = ["Runner", "build_runner", "normalize_uint8"]


def normalize_uint8(images: np.ndarray) -> np.ndarray:
    """``B x H x W x 3`` uint8 RGB -> ``B x 3 x H x W`` ImageNet-normalized float32 (contiguous)."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected B x H x W x 3 uint8 images, got {images.shape} {images.dtype}")
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32) * 255.0
    inv_std = 1.0 / (np.asarray(IMAGENET_STD, dtype=np.float32) * 255.0)
    return np.ascontiguousarray(((images.astype(np.float32) - mean) * inv_std).transpose(0, 3, 1, 2))


@dataclass
class Runner:
    """A built runtime. ``setup_s`` is build time (export, trace); compile time shows in ``first_call_s``."""

    runtime: Runtime
    include_preprocess: bool = False
    setup_s: float = 0.0
    first_call_s: dict[tuple[int, ...], float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.runtime.name

    def make_input(self, batch: int, height: int, width: int, seed: int = 0) -> np.ndarray:
        images = np.random.default_rng(seed).integers(0, 256, (batch, height, width, 3), dtype=np.uint8)
        return images if self.include_preprocess else normalize_uint8(images)

    def call(self, inputs: np.ndarray) -> np.ndarray:
        return self.runtime(normalize_uint8(inputs) if self.include_preprocess else inputs)

    def run(self, inputs: np.ndarray) -> np.ndarray:
        """:meth:`call`, timing the first call of each input shape (where compilers compile)."""
        key = tuple(inputs.shape)
        if key in self.first_call_s:
            return self.call(inputs)
        start = time.perf_counter()
        out = self.call(inputs)
        self.first_call_s[key] = time.perf_counter() - start
        return out


def build_runner(name: str, model: nn.Module, *, device: str = "cpu", preset: Optional[str] = None,
                 threads: Optional[int] = None, include_preprocess: bool = False) -> Runner:
    """The runtime ``name`` for ``model`` (built in memory, no cache: ``setup_s`` is the full build).

    Raises:
        csnet.infer.runtimes.RuntimeUnavailable: it cannot run here.
        csnet.infer.runtimes.RuntimeChoiceError: an unknown runtime or preset.
    """
    start = time.perf_counter()
    runtime = create_runtime(name, model, device=device, threads=threads, preset=preset)
    return Runner(runtime, include_preprocess, setup_s=time.perf_counter() - start)
