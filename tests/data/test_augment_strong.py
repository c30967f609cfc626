"""The ``strong`` augmentation recipe: rotation and zoom in the release's one affine grid, colour jitter of
the image only, draws from ``(seed, epoch, index)`` alone."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from csnet.data import DatasetConfig, SaliencyDataset
from csnet.data.augment import (AugmentParams, GpuAugment, StrongAugment, augment_batch, color_jitter,
                                sample_augment_params)
from tests.train.conftest import make_dataset

S = 32
ZERO, ONE = torch.zeros(3), torch.ones(3)


def _samples(batch: int = 2, size: int = S, seed: int = 0) -> torch.Tensor:
    """Smooth random images (bilinear sampling of them is close to exact) whose mask channel is their red
    channel, so geometry and padding can be checked between image and mask."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.uniform(0, 255, (batch, 3, size // 4, size // 4))).float()
    rgb = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    rgb = rgb.clamp(0, 255).round().to(torch.uint8)
    return torch.cat([rgb, rgb[:, :1]], 1)


def _params(batch: int, rotation: float = 0.0, zoom: float = 1.0, colors=None) -> AugmentParams:
    identity = AugmentParams.identity(batch)
    return AugmentParams(identity.boxes, identity.flips, torch.full((batch,), rotation),
                         torch.full((batch,), zoom),
                         None if colors is None else torch.tensor([colors] * batch, dtype=torch.float32))


def test_quarter_turn_is_rot90_and_turns_clockwise():
    x = _samples()
    _, masks = augment_batch(x, _params(2, math.pi / 2), S, ZERO, ONE)
    # A quarter turn maps pixel centres onto pixel centres: bilinear sampling is exact there.
    expected = torch.rot90(x[:, 3:].float() / 255.0, k=-1, dims=(2, 3))  # k=-1: clockwise
    assert torch.allclose(masks, expected, atol=1e-5)


@pytest.mark.parametrize("rotation_deg, zoom", [(12.0, 1.0), (-15.0, 1.2), (7.0, 0.8)])
def test_rotation_and_zoom_are_the_affine_map_of_the_original(rotation_deg: float, zoom: float):
    """Each output pixel is the original sampled bilinearly at the rotated and scaled position (scipy's
    independent implementation, same reflection at the border)."""
    x = _samples(1)
    images, masks = augment_batch(x, _params(1, math.radians(rotation_deg), zoom), S, ZERO, ONE)
    angle = math.radians(rotation_deg)
    centre = (S - 1) / 2.0
    rows, cols = np.mgrid[:S, :S].astype(np.float64)
    u, v = cols - centre, rows - centre  # output position about the centre, x right, y down
    src_x = centre + (math.cos(angle) * u + math.sin(angle) * v) / zoom
    src_y = centre + (-math.sin(angle) * u + math.cos(angle) * v) / zoom
    original = x[0].float().numpy() / 255.0
    for channel, got in ((0, images[0, 0]), (3, masks[0, 0])):
        # "reflect" is scipy's half-sample reflection: about the image edge, as grid_sample's reflection
        # with align_corners=False, so the zoomed-out border is checked too.
        want = ndimage.map_coordinates(original[channel], [src_y, src_x], order=1, mode="reflect")
        assert np.abs(got.numpy() - want).max() < 1e-4


def test_mask_stays_in_range_and_aligned_with_the_image():
    x = _samples(4)
    params = sample_augment_params(3, 1, range(4), [(S, S)] * 4, strong=StrongAugment())
    no_color = AugmentParams(params.boxes, params.flips, params.rotations, params.zooms)
    images, masks = augment_batch(x, no_color, S, ZERO, ONE)
    assert masks.min() >= 0.0 and masks.max() <= 1.0
    # The mask channel is the red channel: after the same grid and padding they still agree.
    assert torch.allclose(images[:, :1], masks, atol=1e-5)


def test_color_jitter_changes_the_image_and_leaves_the_mask_alone():
    x = _samples(2)
    plain_images, plain_masks = augment_batch(x, _params(2, 0.1, 1.1), S, ZERO, ONE)
    images, masks = augment_batch(x, _params(2, 0.1, 1.1, colors=(1.2, 0.8, 0.7)), S, ZERO, ONE)
    assert torch.equal(masks, plain_masks)
    assert (images - plain_images).abs().max() > 0.01
    assert images.min() >= 0.0 and images.max() <= 1.0


def test_color_jitter_maths():
    rgb = torch.rand(2, 3, 5, 5)
    # Brightness alone scales and clips; factors of 1 change nothing.
    bright = color_jitter(rgb, torch.tensor([[1.5, 1.0, 1.0]] * 2))
    assert torch.allclose(bright, (rgb * 1.5).clamp(0, 1), atol=1e-6)
    assert torch.allclose(color_jitter(rgb, torch.ones(2, 3)), rgb, atol=1e-6)
    # Saturation 0 leaves the gray image (ITU-R 601 luma) in all three channels.
    gray = color_jitter(rgb, torch.tensor([[1.0, 1.0, 0.0]] * 2))
    luma = 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]
    assert torch.allclose(gray, luma[:, None].expand_as(rgb), atol=1e-6)
    # Contrast 0 leaves the mean gray level everywhere.
    flat = color_jitter(rgb, torch.tensor([[1.0, 0.0, 1.0]] * 2))
    assert torch.allclose(flat, luma.mean((1, 2)).view(2, 1, 1, 1).expand_as(rgb), atol=1e-6)


def test_strong_draws_are_reproducible_within_range_and_keep_the_release_crops():
    sizes = [(300, 200)] * 6
    strong = StrongAugment()
    a = sample_augment_params(7, 3, [5, 1, 4, 0, 2, 3], sizes, strong=strong)
    b = sample_augment_params(7, 3, [0, 1, 2, 3, 4, 5], sizes, strong=strong)
    order = [5, 1, 4, 0, 2, 3]
    for name in ("boxes", "flips", "rotations", "zooms", "colors"):
        assert torch.equal(getattr(a, name), getattr(b, name)[order]), name  # per sample, not per batch
    release = sample_augment_params(7, 3, [0, 1, 2, 3, 4, 5], sizes)
    assert torch.equal(release.boxes, b.boxes) and torch.equal(release.flips, b.flips)
    assert release.rotations is None and release.zooms is None and release.colors is None
    many = sample_augment_params(0, 0, range(200), [(300, 200)] * 200, strong=strong)
    assert many.rotations.abs().max() <= math.radians(15.0) + 1e-6
    assert many.zooms.min() >= 0.8 - 1e-6 and many.zooms.max() <= 1.25 + 1e-6
    assert many.colors.min() >= 0.75 - 1e-6 and many.colors.max() <= 1.25 + 1e-6
    assert many.rotations.std() > 0.1 and not torch.equal(sample_augment_params(0, 1, range(200), [(300, 200)] * 200,
                                                                               strong=strong).zooms, many.zooms)


def test_dataset_items_equal_the_batched_path(tmp_path):
    """``dataset[(epoch, i)]`` (what DataLoader workers compute, one item each) equals the batch augmented at
    once (the GPU path's code, here on the CPU): worker count and batching do not change a sample."""
    data = make_dataset(tmp_path / "d", n=4, size=40)
    from csnet.data import pair_dataset

    config = DatasetConfig(size=32, augment_recipe="strong", seed=5)
    dataset = SaliencyDataset(pair_dataset([str(data)]), config, workers=1)
    items = [dataset[(2, i)] for i in range(4)]
    batch_images, batch_masks = GpuAugment(32)(dataset.uint8_tensor(), dataset.augment_params(range(4), 2))
    for i, (image, mask) in enumerate(items):
        assert torch.allclose(image, batch_images[i], atol=1e-5) and torch.allclose(mask, batch_masks[i], atol=1e-6)
    release = SaliencyDataset(pair_dataset([str(data)]), DatasetConfig(size=32, seed=5), workers=1)
    assert not torch.equal(release[(2, 0)][0], items[0][0])  # the recipe is on


def test_unknown_recipe_is_refused():
    with pytest.raises(ValueError, match="augment_recipe"):
        DatasetConfig(augment_recipe="heavy")
