"""Augmentation: reproducible draws, the release's distribution, and the batched warp."""
from __future__ import annotations

from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from csnet.data.augment import (
    FLIP_HORIZONTAL,
    FLIP_NONE,
    FLIP_VERTICAL,
    IMAGENET_MEAN,
    IMAGENET_STD,
    AugmentParams,
    GpuAugment,
    augment_batch,
    sample_augment_params,
)

MEAN, STD = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
S = 64


def _samples(batch: int = 3, size: int = S) -> torch.Tensor:
    return torch.randint(0, 256, (batch, 4, size, size), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(0))


def test_draws_depend_only_on_seed_epoch_index():
    sizes = [(400, 300)] * 3
    a = sample_augment_params(7, 3, [4, 9, 2], sizes)
    b = sample_augment_params(7, 3, [4, 9, 2], sizes)
    assert torch.equal(a.boxes, b.boxes) and torch.equal(a.flips, b.flips)
    alone = sample_augment_params(7, 3, [9], sizes[:1])  # batch composition does not matter
    assert torch.equal(alone.boxes[0], a.boxes[1]) and alone.flips[0] == a.flips[1]
    other_epoch = sample_augment_params(7, 4, [4, 9, 2], sizes)
    other_seed = sample_augment_params(8, 3, [4, 9, 2], sizes)
    assert not torch.equal(a.boxes, other_epoch.boxes)
    assert not torch.equal(a.boxes, other_seed.boxes)


def test_draws_are_pinned():
    # A resumed run on another machine or a later release must draw the same augmentation.
    p = sample_augment_params(0, 0, [0, 1, 2], [(400, 300)] * 3)
    trims = torch.stack([p.boxes[:, 0] * 400, p.boxes[:, 1] * 300,
                         (1 - p.boxes[:, 2]) * 400, (1 - p.boxes[:, 3]) * 300], 1)
    assert trims.round().int().tolist() == PINNED_TRIMS
    assert p.flips.tolist() == PINNED_FLIPS


PINNED_TRIMS = [[8, 9, 13, 1], [13, 14, 9, 12], [13, 7, 4, 5]]
PINNED_FLIPS = [2, 1, 0]


def test_distribution_matches_the_release():
    n = 4000
    p = sample_augment_params(1, 0, range(n), [(400, 300)] * n)
    left = (p.boxes[:, 0] * 400).round().int()
    bottom = ((1 - p.boxes[:, 3]) * 300).round().int()
    assert set(left.tolist()) == set(range(15)) and set(bottom.tolist()) == set(range(15))
    counts = Counter(p.flips.tolist())
    assert abs(counts[FLIP_NONE] / n - 0.5) < 0.03
    assert abs(counts[FLIP_HORIZONTAL] / n - 0.25) < 0.03
    assert abs(counts[FLIP_VERTICAL] / n - 0.25) < 0.03
    never = sample_augment_params(1, 0, range(50), [(400, 300)] * 50, flip_p=0.0, max_trim=0)
    assert never.is_identity


def test_tiny_images_keep_pixels():
    p = sample_augment_params(0, 0, range(200), [(3, 2)] * 200)
    assert (p.boxes[:, 2] > p.boxes[:, 0]).all() and (p.boxes[:, 3] > p.boxes[:, 1]).all()


def test_identity_is_the_plain_resize():
    x = _samples()
    images, masks = augment_batch(x, AugmentParams.identity(3), 48, MEAN, STD)
    ref = F.interpolate(x.float(), size=(48, 48), mode="bilinear", align_corners=False,
                        antialias=False) / 255
    torch.testing.assert_close(masks, ref[:, 3:])
    torch.testing.assert_close(images, (ref[:, :3] - MEAN.view(1, 3, 1, 1)) / STD.view(1, 3, 1, 1))
    same, _ = augment_batch(x, AugmentParams.identity(3), S, MEAN, STD)
    torch.testing.assert_close(same * STD.view(1, 3, 1, 1) + MEAN.view(1, 3, 1, 1),
                               x[:, :3].float() / 255)


@pytest.mark.parametrize("flip", [FLIP_NONE, FLIP_HORIZONTAL, FLIP_VERTICAL])
def test_crop_and_flip_match_interpolate_on_the_crop(flip):
    x = _samples(1)
    left, top, right, bottom = 5, 2, 9, 0
    box = torch.tensor([[left / S, top / S, 1 - right / S, 1 - bottom / S]])
    _, masks = augment_batch(x, AugmentParams(box, torch.tensor([flip])), 48, MEAN, STD)
    ref = F.interpolate(x[:, 3:, top:S - bottom, left:S - right].float(), size=(48, 48),
                        mode="bilinear", align_corners=False)
    ref = {FLIP_NONE: ref, FLIP_HORIZONTAL: ref.flip(-1), FLIP_VERTICAL: ref.flip(-2)}[flip]
    # Same sampling positions; only float32 rounding of the grid differs (< 0.02 gray levels).
    torch.testing.assert_close(masks * 255, ref, atol=0.02, rtol=0)


def test_gpu_augment_module_on_cpu_tensors():
    module = GpuAugment(32)
    x = _samples(5)
    params = sample_augment_params(0, 0, range(5), [(S, S)] * 5)
    images, masks = module(x, params)
    assert images.shape == (5, 3, 32, 32) and masks.shape == (5, 1, 32, 32)
    assert images.dtype == masks.dtype == torch.float32
    assert masks.min() >= 0 and masks.max() <= 1
    lo = ((0 - MEAN) / STD).min() - 1e-5
    hi = ((1 - MEAN) / STD).max() + 1e-5
    assert images.min() >= lo and images.max() <= hi
    assert {"mean", "std"} <= dict(module.named_buffers()).keys()  # they follow .to(device)
    assert "mean" not in module.state_dict()  # constants, not weights
    per_sample = torch.cat([module(x[i:i + 1], AugmentParams(params.boxes[i:i + 1],
                                                             params.flips[i:i + 1]))[0]
                            for i in range(5)])
    torch.testing.assert_close(per_sample, images)


def test_rejects_non_uint8():
    with pytest.raises(ValueError, match="uint8"):
        augment_batch(_samples().float(), AugmentParams.identity(3), 32, MEAN, STD)
