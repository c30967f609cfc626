"""Shared by the inference, service and CLI tests: a small model whose masks are not flat, test photos.

A freshly initialized CSNet's logits are ~1e-7 (flat 50% masks), which would hide resizing and
compositing bugs; :func:`make_test_model` re-estimates its BatchNorm statistics on noise and scales
its head so that masks have real structure. Still random weights: no trained model is needed.
"""
from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from tests.shared_data import require_shared

SIZE = 64  # inference resolution of the fast tests


def make_test_model(name: str = "csnet_l_x1", seed: int = 0):
    from csnet.models import create_model

    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = create_model(name)
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.momentum = None  # cumulative average: two batches fix the statistics
        model.train()
        with torch.no_grad():
            for _ in range(2):
                model(torch.randn(4, 3, 64, 64))
            model.eval()
            logits = model(torch.randn(2, 3, 64, 64))
            scale = 2.0 / float(logits.std())
            model.head.weight.mul_(scale)
            model.head.bias.mul_(scale).sub_(float(logits.mean()) * scale)
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.momentum = 0.1
    finally:
        torch.random.set_rng_state(generator_state)
    return model.eval()


@functools.lru_cache(maxsize=None)
def _scratch() -> Path:
    path = Path(tempfile.mkdtemp(prefix="csnet-tests-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@functools.lru_cache(maxsize=None)
def model_file() -> Path:
    """A ``.safetensors`` file of :func:`make_test_model` (made once per test session)."""
    from csnet.models import save_model

    return save_model(make_test_model(), _scratch() / "test_model.safetensors")


@functools.lru_cache(maxsize=None)
def onnx_file() -> Path:
    """The ONNX export of :func:`model_file`'s model (made once per test session)."""
    from csnet.infer.onnx_export import export_onnx
    from csnet.models import load_model

    return export_onnx(load_model(model_file()), _scratch() / "test_model.onnx")


@functools.lru_cache(maxsize=None)
def shared_predictor():
    """An eager-runtime Predictor on the test model, shared by tests that only read from it.

    It runs at 64 x 64 (not the protocol's 224) to keep the tests fast; the protocol tests use 224.
    """
    from csnet.infer.predictor import Predictor

    return Predictor(model_file(), runtime="eager", device="cpu", size=SIZE)


def photos(count: int = 2) -> list[Path]:
    """The first ``count`` PASCAL-S photos (skips locally / fails in CI without ../shared)."""
    folder = require_shared("data", "PASCAL-S", "images")
    return sorted(folder.glob("*.jpg"), key=lambda p: int(p.stem) if p.stem.isdigit() else p.stem)[:count]


def gradient_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth RGB test image with a bright blob (uint8 ``H x W x 3``)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    blob = np.exp(-(((ys - height * 0.45) / (0.2 * height + 1)) ** 2 + ((xs - width * 0.55) / (0.2 * width + 1)) ** 2))
    image = np.stack([blob * 220 + 20, xs / max(width - 1, 1) * 120, ys / max(height - 1, 1) * 160], axis=2)
    image += rng.normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)
