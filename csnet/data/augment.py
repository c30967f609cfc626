"""The release's training augmentation (SPEC 4), batched, on any device, reproducible.

Per sample: trim 0-14 px (each of the four sides drawn on its own, both ends included) from the
original image; flip with probability 0.5, the flip being horizontal or vertical with equal odds
(our reading of "half the flips horizontal, half vertical": 25 % horizontal, 25 % vertical, 50 %
none); resize to ``size x size`` bilinearly (``align_corners=False``, no antialiasing); ImageNet
mean/std normalization for the image; the mask is resized the same way and kept soft in [0, 1]
(the BCE target, as in the release: not binarized again after resizing).

Faithfulness and speed: samples come from the cache (:mod:`csnet.data.cache`) as the original
image resized to ``S x S``. The trim is drawn in pixels of the *original* image and applied as
the same fraction of the cached square, at sub-pixel precision (one ``grid_sample`` whose
sampling positions are those of ``F.interpolate(mode="bilinear", align_corners=False)`` on the
cropped region), so the crop distribution matches the release; what differs is that the
pixels were resampled twice (original -> S -> size) and rounded to uint8 in between.

Reproducibility: each sample's parameters are a hash of ``(seed, epoch, index)`` (BLAKE2b, not a
stateful RNG), so a resumed run, a different worker count or another machine draws the same
crops and flips.
"""
from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from csnet.constants import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "AugmentParams",
    "GpuAugment",
    "augment_batch",
    "sample_augment_params",
]

FLIP_NONE, FLIP_HORIZONTAL, FLIP_VERTICAL = 0, 1, 2

_MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class AugmentParams:
    """Crop boxes and flips for a batch.

    Attributes:
        boxes: ``(B, 4)`` float32 ``(x0, y0, x1, y1)`` as fractions of the image's width and
            height (``(0, 0, 1, 1)`` is the whole image).
        flips: ``(B,)`` int64, ``0`` none, ``1`` horizontal (left-right), ``2`` vertical.
    """

    boxes: torch.Tensor
    flips: torch.Tensor

    @classmethod
    def identity(cls, batch: int, device: torch.device | str | None = None) -> "AugmentParams":
        """No crop and no flip for ``batch`` samples."""
        boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0]], device=device).repeat(batch, 1)
        return cls(boxes, torch.zeros(batch, dtype=torch.int64, device=device))

    def to(self, device: torch.device | str) -> "AugmentParams":
        return AugmentParams(self.boxes.to(device), self.flips.to(device))

    @property
    def is_identity(self) -> bool:
        return bool((self.flips == FLIP_NONE).all()) and bool(
            (self.boxes == self.boxes.new_tensor([0.0, 0.0, 1.0, 1.0])).all())


def sample_augment_params(seed: int, epoch: int, indices: Sequence[int],
                          image_sizes: Sequence[tuple[int, int]], *, max_trim: int = 14,
                          flip_p: float = 0.5) -> AugmentParams:
    """Draw the crop and flip of each sample from ``(seed, epoch, index)`` alone.

    Args:
        seed, epoch: the run's seed and the epoch being drawn.
        indices: dataset indices of the batch, ``B`` of them.
        image_sizes: ``(W, H)`` of the *original* image of each of those samples, in the same
            order as ``indices`` (trims are in original pixels).
        max_trim: the most pixels trimmed from one side (0-``max_trim``, both included).
        flip_p: probability of a flip; a flip is horizontal or vertical with equal odds.

    Returns:
        :class:`AugmentParams` for ``B`` samples, on the CPU.
    """
    if len(indices) != len(image_sizes):
        raise ValueError(f"{len(indices)} indices but {len(image_sizes)} image sizes")
    boxes, flips = [], []
    for index, (width, height) in zip(indices, image_sizes):
        left, top, right, bottom, flip_draw, direction = _draws(seed, epoch, index, 6)
        # Trims stop short of emptying a tiny image: at least one pixel stays.
        span = max_trim + 1
        left, right = (min(t % span, (width - 1) // 2) for t in (left, right))
        top, bottom = (min(t % span, (height - 1) // 2) for t in (top, bottom))
        boxes.append((left / width, top / height, (width - right) / width,
                      (height - bottom) / height))
        flipped = (flip_draw >> 11) * 2.0 ** -53 < flip_p  # 53 bits: an exact float in [0, 1)
        flips.append((FLIP_HORIZONTAL if direction & 1 == 0 else FLIP_VERTICAL) if flipped
                     else FLIP_NONE)
    return AugmentParams(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                         torch.tensor(flips, dtype=torch.int64))


def augment_batch(samples: torch.Tensor, params: AugmentParams, size: int,
                  mean: torch.Tensor, std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop, flip, resize and normalize a batch of cached samples.

    Args:
        samples: ``(B, 4, S, S)`` uint8, channels R, G, B, mask (any device).
        params: per-sample boxes and flips (moved to ``samples``' device).
        size: output side.
        mean, std: ``(3,)`` float normalization, on ``samples``' device.

    Returns:
        ``(images, masks)``: ``(B, 3, size, size)`` float32 normalized and ``(B, 1, size, size)``
        float32 in [0, 1].
    """
    if samples.dtype != torch.uint8 or samples.ndim != 4 or samples.shape[1] != 4:
        raise ValueError(f"samples must be (B, 4, S, S) uint8, got {tuple(samples.shape)} "
                         f"{samples.dtype}")
    batch = samples.shape[0]
    x = samples.float()
    params = params.to(samples.device)
    if params.is_identity:
        # No crop, no flip (validation): the plain resize, exact rather than via a grid.
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=False)
    else:
        # One affine grid per sample maps output pixel centres into the crop box; a negative
        # scale mirrors it (the flip). With align_corners=False, grid_sample then samples at the
        # positions F.interpolate uses on the cropped region (same values for an integer box
        # when downscaling, which the cache margin makes the usual case).
        x0, y0, x1, y1 = params.boxes.float().unbind(1)
        scale_x = torch.where(params.flips == FLIP_HORIZONTAL, x0 - x1, x1 - x0)
        scale_y = torch.where(params.flips == FLIP_VERTICAL, y0 - y1, y1 - y0)
        theta = torch.zeros(batch, 2, 3, device=samples.device)
        theta[:, 0, 0], theta[:, 0, 2] = scale_x, x0 + x1 - 1.0
        theta[:, 1, 1], theta[:, 1, 2] = scale_y, y0 + y1 - 1.0
        grid = F.affine_grid(theta, [batch, 4, size, size], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # Bilinear weights sum to 1 only up to rounding: keep the BCE target inside [0, 1].
    x = x.clamp_(0.0, 255.0) / 255.0
    images = (x[:, :3] - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    return images, x[:, 3:]


class GpuAugment(nn.Module):
    """:func:`augment_batch` as a module, so normalization constants follow ``.to(device)``.

    Keeps the whole input pipeline on the accelerator: the trainer holds the cached dataset as
    one ``(N, 4, S, S)`` uint8 tensor there (``SaliencyDataset.uint8_tensor()``), indexes a
    batch and calls this module with ``SaliencyDataset.augment_params(indices)``.

    Args:
        size: output side (224 in the release).
        mean, std: per-channel normalization of images in [0, 1].

    Shapes:
        ``forward(samples (B, 4, S, S) uint8, params)`` ->
        ``(images (B, 3, size, size) float32, masks (B, 1, size, size) float32 in [0, 1])``.
    """

    def __init__(self, size: int = 224, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD) -> None:
        super().__init__()
        self.size = int(size)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32), persistent=False)

    def forward(self, samples: torch.Tensor,
                params: AugmentParams) -> tuple[torch.Tensor, torch.Tensor]:
        return augment_batch(samples, params, self.size, self.mean.to(samples.device),
                             self.std.to(samples.device))

    def extra_repr(self) -> str:
        return f"size={self.size}"


def _draws(seed: int, epoch: int, index: int, count: int) -> tuple[int, ...]:
    """``count`` 64-bit integers determined by ``(seed, epoch, index)`` alone."""
    message = struct.pack("<3Q", seed & _MASK64, epoch & _MASK64, index & _MASK64)
    digest = hashlib.blake2b(message, digest_size=8 * count, person=b"csnet-aug").digest()
    return struct.unpack(f"<{count}Q", digest)
