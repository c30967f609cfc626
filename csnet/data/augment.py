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

The ``strong`` recipe (:class:`StrongAugment`, opt-in) adds, per sample, a rotation and a zoom
about the crop's centre, folded into the same affine grid (image and mask move together; the
border is filled by reflection for both, so what the mask calls object is what the image shows),
then a colour jitter of the image only (brightness, contrast, saturation, with torchvision's
definitions). Its draws come from a second hash of the same ``(seed, epoch, index)``, so the
crops and flips stay those of the release recipe and resume stays exact.

The ``copy-paste`` recipe (:class:`CopyPasteAugment`, opt-in) keeps the release crop and flip and,
with some probability, pastes the object of another sample (the donor) onto the result: the donor is
cropped and flipped by its own release draws, resampled once from its cached square straight to a
square of a drawn side (a fraction of the output side) and placed at a drawn integer position fully
inside the frame. Its soft mask is the alpha: ``image = alpha * donor + (1 - alpha) * image`` and
``mask = max(alpha, (1 - alpha) * mask)``, so the sample's own object stays salient where the donor
does not cover it. Donors are the dataset's ground-truth pairs only (never a teacher's soft maps,
:attr:`csnet.data.pairs.ImagePair.teacher`). Whether to paste, which donor, the side and the
position come from a third hash of ``(seed, epoch, index)``, so the base sample's crop and flip are
unchanged and resume, worker count and machine give the same samples. Pasting works in [0, 1]
before the normalization, on whatever device the batch is on (:class:`GpuAugment` included).
"""
from __future__ import annotations

import bisect
import hashlib
import math
import struct
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from csnet.constants import AUGMENT_RECIPES, IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "AUGMENT_RECIPES",
    "AugmentParams",
    "CopyPasteAugment",
    "GpuAugment",
    "PasteParams",
    "StrongAugment",
    "augment_batch",
    "copy_paste",
    "sample_augment_params",
    "sample_paste_params",
]

FLIP_NONE, FLIP_HORIZONTAL, FLIP_VERTICAL = 0, 1, 2

_MASK64 = (1 << 64) - 1

#: ITU-R 601 luma weights, as torchvision's ``rgb_to_grayscale`` (used by its saturation/contrast).
_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class StrongAugment:
    """Ranges of the ``strong`` recipe's extra draws (each uniform, per sample).

    Attributes:
        max_rotate_deg: rotation in ``[-max_rotate_deg, +max_rotate_deg]`` degrees.
        zoom: ``(low, high)``, drawn log-uniformly; > 1 zooms in (the object grows), < 1 zooms out.
        brightness, contrast, saturation: each factor in ``[1 - v, 1 + v]`` (torchvision's
            ``ColorJitter`` convention); image only, the mask is left alone.
    """

    max_rotate_deg: float = 15.0
    zoom: tuple[float, float] = (0.8, 1.25)
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.25

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_rotate_deg <= 180.0:
            raise ValueError(f"max_rotate_deg must be in [0, 180], got {self.max_rotate_deg}")
        if not 0.0 < self.zoom[0] <= self.zoom[1]:
            raise ValueError(f"zoom must be (low, high) with 0 < low <= high, got {self.zoom}")
        for name in ("brightness", "contrast", "saturation"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")


@dataclass(frozen=True)
class CopyPasteAugment:
    """Ranges of the ``copy-paste`` recipe's draws (each uniform, per sample).

    Attributes:
        p: probability that a sample receives a donor's object (when a donor exists).
        scale: ``(low, high)``: side of the pasted square as a fraction of the output side; at most
            1, so the pasted object always fits inside the frame.
    """

    p: float = 0.5
    scale: tuple[float, float] = (0.5, 1.0)

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {self.p}")
        if not 0.0 < self.scale[0] <= self.scale[1] <= 1.0:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high <= 1, "
                             f"got {self.scale}")


@dataclass(frozen=True)
class AugmentParams:
    """Crop boxes and flips for a batch, and the ``strong`` recipe's extras when drawn.

    Attributes:
        boxes: ``(B, 4)`` float32 ``(x0, y0, x1, y1)`` as fractions of the image's width and
            height (``(0, 0, 1, 1)`` is the whole image).
        flips: ``(B,)`` int64, ``0`` none, ``1`` horizontal (left-right), ``2`` vertical.
        rotations: ``(B,)`` float32 radians (positive turns the content clockwise on screen), or ``None``.
        zooms: ``(B,)`` float32 magnification about the crop's centre, or ``None``.
        colors: ``(B, 3)`` float32 brightness, contrast and saturation factors, or ``None``.
        paste: the ``copy-paste`` recipe's donors and placements, or ``None``.
        With all four ``None`` the batch is augmented exactly as the release recipe.
    """

    boxes: torch.Tensor
    flips: torch.Tensor
    rotations: Optional[torch.Tensor] = None
    zooms: Optional[torch.Tensor] = None
    colors: Optional[torch.Tensor] = None
    paste: Optional["PasteParams"] = None

    @classmethod
    def identity(cls, batch: int, device: torch.device | str | None = None) -> "AugmentParams":
        """No crop and no flip for ``batch`` samples."""
        boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0]], device=device).repeat(batch, 1)
        return cls(boxes, torch.zeros(batch, dtype=torch.int64, device=device))

    def to(self, device: torch.device | str) -> "AugmentParams":
        def move(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
            return None if t is None else t.to(device)

        return AugmentParams(self.boxes.to(device), self.flips.to(device), move(self.rotations),
                             move(self.zooms), move(self.colors),
                         None if self.paste is None else self.paste.to(device))

    @property
    def is_identity(self) -> bool:
        return self.colors is None and self.paste is None and self.moves_nothing

    @property
    def moves_nothing(self) -> bool:
        """No crop, flip, rotation or zoom: the geometry is the plain resize."""
        return (self.rotations is None and self.zooms is None
                and bool((self.flips == FLIP_NONE).all())
                and bool((self.boxes == self.boxes.new_tensor([0.0, 0.0, 1.0, 1.0])).all()))


@dataclass(frozen=True)
class PasteParams:
    """What the ``copy-paste`` recipe pastes onto each sample of a batch, and where.

    Attributes:
        donors: ``(B,)`` int64 dataset index of the donor, ``-1`` where nothing is pasted.
        scales: ``(B,)`` float32 side of the pasted square as a fraction of the output side.
        positions: ``(B, 2)`` float32 ``(x, y)`` in [0, 1]: where the square's top-left corner lies
            within the room the square leaves (0: the left/top edge, 1: the right/bottom edge).
        crops: the donors' own release crops and flips (identity where nothing is pasted).
    """

    donors: torch.Tensor
    scales: torch.Tensor
    positions: torch.Tensor
    crops: AugmentParams

    def to(self, device: torch.device | str) -> "PasteParams":
        return PasteParams(self.donors.to(device), self.scales.to(device),
                           self.positions.to(device), self.crops.to(device))

    @property
    def donor_indices(self) -> list[int]:
        """Dataset indices of the donors of the rows that receive one, in row order: the samples
        :func:`augment_batch` wants as ``donors``."""
        return [d for d in self.donors.tolist() if d >= 0]


def sample_augment_params(seed: int, epoch: int, indices: Sequence[int],
                          image_sizes: Sequence[tuple[int, int]], *, max_trim: int = 14,
                          flip_p: float = 0.5,
                          strong: Optional[StrongAugment] = None) -> AugmentParams:
    """Draw the crop and flip of each sample from ``(seed, epoch, index)`` alone.

    Args:
        seed, epoch: the run's seed and the epoch being drawn.
        indices: dataset indices of the batch, ``B`` of them.
        image_sizes: ``(W, H)`` of the *original* image of each of those samples, in the same
            order as ``indices`` (trims are in original pixels).
        max_trim: the most pixels trimmed from one side (0-``max_trim``, both included).
        flip_p: probability of a flip; a flip is horizontal or vertical with equal odds.
        strong: also draw a rotation, a zoom and colour factors within these ranges (from a
            second hash, so the crops and flips are those drawn without it).

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
    params = AugmentParams(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                           torch.tensor(flips, dtype=torch.int64))
    if strong is None:
        return params
    rotations, zooms, colors = [], [], []
    log_low, log_high = math.log(strong.zoom[0]), math.log(strong.zoom[1])
    for index in indices:
        u = [_unit(d) for d in _draws(seed, epoch, index, 5, person=b"csnet-aug-strong")]
        rotations.append(math.radians(strong.max_rotate_deg * (2.0 * u[0] - 1.0)))
        zooms.append(math.exp(log_low + (log_high - log_low) * u[1]))
        colors.append(tuple(1.0 + v * (2.0 * w - 1.0) for v, w in
                            zip((strong.brightness, strong.contrast, strong.saturation), u[2:])))
    return AugmentParams(params.boxes, params.flips, torch.tensor(rotations, dtype=torch.float32),
                         torch.tensor(zooms, dtype=torch.float32),
                         torch.tensor(colors, dtype=torch.float32).reshape(-1, 3))


def sample_paste_params(seed: int, epoch: int, indices: Sequence[int], donors: Sequence[int],
                        image_sizes: Sequence[tuple[int, int]], *,
                        paste: CopyPasteAugment = CopyPasteAugment(), max_trim: int = 14,
                        flip_p: float = 0.5) -> PasteParams:
    """Draw, from ``(seed, epoch, index)`` alone, whether each sample gets a donor's object, whose,
    how large and where.

    The draws are a hash stream of their own, so the samples' crops and flips are those drawn
    without the recipe. Every draw is made for every sample (used or not) and the donor is picked
    from the sorted donor list, so a sample's paste does not depend on the rest of the batch.

    Args:
        seed, epoch: the run's seed and the epoch being drawn.
        indices: dataset indices of the batch, ``B`` of them.
        donors: dataset indices that may give their object (the ground-truth pairs). A sample never
            receives its own object; with no other donor it receives none.
        image_sizes: ``(W, H)`` of the original image of *every* dataset sample, by dataset index
            (the donors' crops are drawn in their original pixels).
        paste: probability and scale range.
        max_trim, flip_p: the donors' release crop and flip, drawn as for their own samples.

    Returns:
        :class:`PasteParams` for ``B`` samples, on the CPU.
    """
    candidates = sorted(set(donors))
    members = set(candidates)
    low, high = paste.scale
    chosen, scales, positions = [], [], []
    for index in indices:
        u = [_unit(d) for d in _draws(seed, epoch, index, 5, person=b"csnet-aug-paste")]
        own = index in members
        pool = len(candidates) - own
        donor = -1
        if pool > 0 and u[0] < paste.p:
            k = int(u[1] * pool)
            if own and k >= bisect.bisect_left(candidates, index):
                k += 1  # step over the sample itself
            donor = candidates[k]
        chosen.append(donor)
        scales.append(low + (high - low) * u[2])
        positions.append((u[3], u[4]))
    rows = [row for row, donor in enumerate(chosen) if donor >= 0]
    crops = AugmentParams.identity(len(chosen))
    if rows:
        drawn = sample_augment_params(seed, epoch, [chosen[r] for r in rows],
                                      [image_sizes[chosen[r]] for r in rows], max_trim=max_trim,
                                      flip_p=flip_p)
        crops.boxes[rows], crops.flips[rows] = drawn.boxes, drawn.flips
    return PasteParams(torch.tensor(chosen, dtype=torch.int64),
                       torch.tensor(scales, dtype=torch.float32),
                       torch.tensor(positions, dtype=torch.float32).reshape(-1, 2), crops)


def augment_batch(samples: torch.Tensor, params: AugmentParams, size: int,
                  mean: torch.Tensor, std: torch.Tensor,
                  donors: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop, flip, resize (paste, with ``params.paste``) and normalize a batch of cached samples.

    Args:
        samples: ``(B, 4, S, S)`` uint8, channels R, G, B, mask (any device).
        params: per-sample boxes and flips (moved to ``samples``' device).
        size: output side.
        mean, std: ``(3,)`` float normalization, on ``samples``' device.
        donors: ``(K, 4, S, S)`` uint8, the cached samples ``params.paste.donor_indices`` (one per
            row that receives an object, in row order); may be ``None`` when ``K`` is 0.

    Returns:
        ``(images, masks)``: ``(B, 3, size, size)`` float32 normalized and ``(B, 1, size, size)``
        float32 in [0, 1].
    """
    _check_samples(samples, "samples")
    params = params.to(samples.device)
    x = _warp(samples.float(), params, size)
    if params.paste is not None:
        x = copy_paste(x, params.paste, donors)
    rgb = x[:, :3] if params.colors is None else color_jitter(x[:, :3], params.colors)
    images = (rgb - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    return images, x[:, 3:]


def copy_paste(x: torch.Tensor, paste: PasteParams,
               donors: Optional[torch.Tensor]) -> torch.Tensor:
    """Paste each row's donor object onto it, in place: the ``copy-paste`` recipe's compositing.

    The donor is cropped and flipped by ``paste.crops`` and resampled once, from its cached square,
    to the pasted square's side; its mask channel is the alpha. The sides differ per row, so this
    is one small resample per pasted row, cheap next to the network.

    Args:
        x: ``(B, 4, size, size)`` float in [0, 1], channels R, G, B, mask: the augmented samples.
        paste: donors, sides and positions of the batch (on any device).
        donors: ``(K, 4, S, S)`` uint8, the cached donors of the ``K`` rows that receive one
            (``paste.donor_indices``), in row order; ``None`` allowed when ``K`` is 0.

    Returns:
        ``x``, where pasted: ``rgb = alpha * donor + (1 - alpha) * rgb`` and
        ``mask = max(alpha, (1 - alpha) * mask)``.
    """
    rows = [row for row, donor in enumerate(paste.donors.tolist()) if donor >= 0]
    if not rows:
        return x
    if donors is None or donors.shape[0] != len(rows):
        given = 0 if donors is None else donors.shape[0]
        raise ValueError(f"{len(rows)} rows receive a donor's object but {given} donors were given")
    _check_samples(donors, "donors")
    size = x.shape[-1]
    scales, positions = paste.scales.tolist(), paste.positions.tolist()
    crops = paste.crops.to(x.device)
    for k, row in enumerate(rows):
        side = min(size, max(1, round(scales[row] * size)))
        # A position in [0, 1] picks one of the size - side + 1 placements (the min keeps 1 itself,
        # which float32 rounding of a draw just below 1 can give, on the last one).
        left, top = (min(int(p * (size - side + 1)), size - side) for p in positions[row])
        crop = AugmentParams(crops.boxes[row:row + 1], crops.flips[row:row + 1])
        donor = _warp(donors[k:k + 1].to(x.device).float(), crop, side)[0]
        alpha = donor[3:]
        region = x[row, :, top:top + side, left:left + side]
        region[:3] = alpha * donor[:3] + (1.0 - alpha) * region[:3]
        region[3:] = torch.maximum(alpha, (1.0 - alpha) * region[3:])
    return x


def _check_samples(samples: torch.Tensor, name: str) -> None:
    if samples.dtype != torch.uint8 or samples.ndim != 4 or samples.shape[1] != 4:
        raise ValueError(f"{name} must be (B, 4, S, S) uint8, got {tuple(samples.shape)} "
                         f"{samples.dtype}")


def _warp(x: torch.Tensor, params: AugmentParams, size: int) -> torch.Tensor:
    """Crop, flip (rotate, zoom) and resize ``(B, 4, S, S)`` float samples in [0, 255] to
    ``(B, 4, size, size)`` in [0, 1]; ``params`` on ``x``'s device."""
    batch = x.shape[0]
    if params.moves_nothing:
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
        theta = torch.zeros(batch, 2, 3, device=x.device)
        theta[:, 0, 0], theta[:, 0, 2] = scale_x, x0 + x1 - 1.0
        theta[:, 1, 1], theta[:, 1, 2] = scale_y, y0 + y1 - 1.0
        padding = "border"
        if params.rotations is not None or params.zooms is not None:
            # Rotate and zoom the output frame before it is mapped into the crop box: the linear
            # part becomes diag(scale) @ R(angle) / zoom, still one grid for image and mask.
            theta[:, :, :2] = theta[:, :, :2] @ _rotate_zoom(params, batch, x.device)
            # Zooming out or rotating reaches outside the image: reflect image and mask alike.
            padding = "reflection"
        grid = F.affine_grid(theta, [batch, 4, size, size], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)
    # Bilinear weights sum to 1 only up to rounding: keep the BCE target inside [0, 1].
    return x.clamp_(0.0, 255.0) / 255.0


def color_jitter(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Brightness, then contrast, then saturation, per sample, as torchvision's ``adjust_*``.

    Args:
        images: ``(B, 3, H, W)`` RGB in [0, 1].
        factors: ``(B, 3)`` brightness, contrast and saturation factors (1 leaves the image alone).

    Returns:
        ``(B, 3, H, W)`` in [0, 1].
    """
    brightness, contrast, saturation = (f.view(-1, 1, 1, 1) for f in factors.float().unbind(1))
    luma = images.new_tensor(_LUMA).view(1, 3, 1, 1)
    out = (images * brightness).clamp(0.0, 1.0)
    gray_mean = (out * luma).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    out = (contrast * out + (1.0 - contrast) * gray_mean).clamp(0.0, 1.0)
    gray = (out * luma).sum(1, keepdim=True)
    return (saturation * out + (1.0 - saturation) * gray).clamp(0.0, 1.0)


def _rotate_zoom(params: AugmentParams, batch: int, device: torch.device) -> torch.Tensor:
    """``(B, 2, 2)`` R(angle) / zoom in the normalized output frame (identity where not drawn)."""
    angles = (params.rotations if params.rotations is not None
              else torch.zeros(batch, device=device)).float()
    zooms = params.zooms.float() if params.zooms is not None else torch.ones(batch, device=device)
    # The grid maps output positions to input positions: the inverse of the visible transform, so
    # the content turns by +angle (clockwise, y pointing down) and grows by zoom.
    cos, sin = torch.cos(angles) / zooms, torch.sin(angles) / zooms
    return torch.stack([torch.stack([cos, sin], 1), torch.stack([-sin, cos], 1)], 1)


class GpuAugment(nn.Module):
    """:func:`augment_batch` as a module, so normalization constants follow ``.to(device)``.

    Keeps the whole input pipeline on the accelerator: the trainer holds the cached dataset as
    one ``(N, 4, S, S)`` uint8 tensor there (``SaliencyDataset.uint8_tensor()``), indexes a
    batch and calls this module with ``SaliencyDataset.augment_params(indices)`` (and, for the
    ``copy-paste`` recipe, the same tensor indexed by ``params.paste.donor_indices``).

    Args:
        size: output side (224 in the release).
        mean, std: per-channel normalization of images in [0, 1].

    Shapes:
        ``forward(samples (B, 4, S, S) uint8, params, donors (K, 4, S, S) uint8 or None)`` ->
        ``(images (B, 3, size, size) float32, masks (B, 1, size, size) float32 in [0, 1])``.
    """

    def __init__(self, size: int = 224, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD) -> None:
        super().__init__()
        self.size = int(size)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32), persistent=False)

    def forward(self, samples: torch.Tensor, params: AugmentParams,
                donors: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        return augment_batch(samples, params, self.size, self.mean.to(samples.device),
                             self.std.to(samples.device), donors)

    def extra_repr(self) -> str:
        return f"size={self.size}"


def _draws(seed: int, epoch: int, index: int, count: int,
           person: bytes = b"csnet-aug") -> tuple[int, ...]:
    """``count`` 64-bit integers determined by ``(seed, epoch, index)`` alone (``person``
    separates independent streams of draws)."""
    message = struct.pack("<3Q", seed & _MASK64, epoch & _MASK64, index & _MASK64)
    digest = hashlib.blake2b(message, digest_size=8 * count, person=person).digest()
    return struct.unpack(f"<{count}Q", digest)


def _unit(draw: int) -> float:
    """A 64-bit draw as an exact float in [0, 1) (its top 53 bits)."""
    return (draw >> 11) * 2.0 ** -53
