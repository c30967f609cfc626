"""csnet.infer.protocol: the SPEC 4 test protocol (kept here until tests/infer/ exists; move it there)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from csnet.infer.protocol import IMAGENET_MEAN, IMAGENET_STD, INPUT_SIZE, postprocess, preprocess


@pytest.mark.shared
def test_preprocess_matches_the_released_inputs():
    Image = pytest.importorskip("PIL.Image")
    from tests.shared_data import require_shared

    ref = np.load(require_shared("reference", "official_io.npz"))
    images = require_shared("data", "PASCAL-S") / "images"
    for name, expected in zip(ref["names"][:8], ref["inputs"][:8]):
        x = preprocess(np.asarray(Image.open(images / name).convert("RGB")))
        assert x.shape == (1, 3, INPUT_SIZE, INPUT_SIZE) and x.dtype == torch.float32
        np.testing.assert_allclose(x[0].numpy(), expected, rtol=0, atol=1e-6, err_msg=name)


def test_preprocess_normalizes_and_accepts_grayscale():
    image = np.full((30, 41, 3), 255, np.uint8)
    x = preprocess(image)
    expected = [(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]
    np.testing.assert_allclose(x[0, :, 0, 0].numpy(), expected, rtol=1e-6)
    gray = np.arange(30 * 41, dtype=np.uint8).reshape(30, 41)
    np.testing.assert_array_equal(preprocess(gray), preprocess(np.repeat(gray[..., None], 3, 2)))
    assert preprocess(image, size=64).shape == (1, 3, 64, 64)


@pytest.mark.parametrize("bad", [np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 4), np.uint8),
                                 np.zeros((2, 8, 8, 3), np.uint8), np.zeros((0, 8, 3), np.uint8)])
def test_preprocess_rejects(bad):
    with pytest.raises(ValueError):
        preprocess(bad)


def test_postprocess_shapes_and_values():
    logits = torch.zeros(1, 1, 224, 224)
    out = postprocess(logits, (375, 500))
    assert out.shape == (375, 500) and out.dtype == np.uint8
    assert np.all(out == 128)  # sigmoid(0) * 255 = 127.5, rounded half to even
    big = torch.full((224, 224), 50.0)
    assert np.all(postprocess(big, (7, 9)) == 255) and np.all(postprocess(-big, (7, 9)) == 0)
    ramp = torch.linspace(-6, 6, 224).repeat(224, 1)
    a = postprocess(ramp[None], (50, 80))
    assert np.all(np.diff(a.astype(int), axis=1) >= 0)  # resizing keeps the left-to-right order
    np.testing.assert_array_equal(a, postprocess(ramp.numpy(), (50, 80)))  # arrays work too


def test_postprocess_identity_size_is_sigmoid():
    logits = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = np.round(torch.sigmoid(logits)[0, 0].numpy() * 255)
    np.testing.assert_array_equal(postprocess(logits, (16, 16)), expected.astype(np.uint8))


@pytest.mark.parametrize("bad", [torch.zeros(2, 1, 8, 8), torch.zeros(1, 2, 8, 8), torch.zeros(8)])
def test_postprocess_rejects_batches_and_channels(bad):
    with pytest.raises(ValueError):
        postprocess(bad, (8, 8))
