"""The training dataset: cached uint8 samples and the release's augmentation, reproducible."""
from __future__ import annotations

import dataclasses
import operator
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from csnet.constants import IMAGENET_MEAN, IMAGENET_STD
from csnet.data.augment import (AUGMENT_RECIPES, AugmentParams, CopyPasteAugment, GpuAugment,
                                StrongAugment, augment_batch, sample_augment_params,
                                sample_paste_params)
from csnet.data.cache import SampleCache
from csnet.data.pairs import DatasetSource, ImagePair
from csnet.data.scan import Progress, _check_pairs_keyed, scan_dataset
from csnet.io.images import DEFAULT_MAX_PIXELS

__all__ = ["DatasetConfig", "SaliencyDataset"]


@dataclass(frozen=True)
class DatasetConfig:
    """How training samples are made (defaults: the release, SPEC 4).

    Attributes:
        size: side of the network input.
        augment: crop/flip as in :mod:`csnet.data.augment`; off, samples are only resized.
        augment_recipe: ``release`` (crop/flip only), ``strong`` (plus rotation, zoom and colour
            jitter, :class:`~csnet.data.augment.StrongAugment`) or ``copy-paste`` (plus, for half
            the samples, the object of a ground-truth pair pasted on,
            :class:`~csnet.data.augment.CopyPasteAugment`); used when ``augment`` is on.
        max_trim: the most original-image pixels trimmed from each side.
        flip_p: probability of a flip (horizontal or vertical, equal odds).
        seed: with the epoch and the index, decides every crop and flip.
        mask_threshold: gray masks binarized at ``> mask_threshold``; ``None`` keeps them soft.
        cache_size: side of the cached square; ``None`` means ``size + 32`` with augmentation
            (so that a crop of up to 28 px of a typical 300-400 px image still holds >= ``size``
            cached pixels and the second resize shrinks), ``size`` without (the test protocol's
            single resize).
        cache_dir: keep the cache as ``.npy`` files there; ``None`` keeps it in memory.
        max_pixels: larger images are skipped as unreadable.
        mean, std: image normalization (ImageNet).
    """

    size: int = 224
    augment: bool = True
    augment_recipe: str = "release"
    max_trim: int = 14
    flip_p: float = 0.5
    seed: int = 0
    mask_threshold: int | None = 128
    cache_size: int | None = None
    cache_dir: str | None = None
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"size must be positive, got {self.size}")
        if self.augment_recipe not in AUGMENT_RECIPES:
            raise ValueError(f"augment_recipe must be one of {', '.join(AUGMENT_RECIPES)}, "
                             f"got {self.augment_recipe!r}")
        if self.max_trim < 0:
            raise ValueError(f"max_trim must be >= 0, got {self.max_trim}")
        if not 0.0 <= self.flip_p <= 1.0:
            raise ValueError(f"flip_p must be in [0, 1], got {self.flip_p}")
        if self.mask_threshold is not None and not 0 <= self.mask_threshold <= 255:
            raise ValueError(f"mask_threshold must be in [0, 255], got {self.mask_threshold}")
        if self.cache_size is not None and self.cache_size < 1:
            raise ValueError(f"cache_size must be positive, got {self.cache_size}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("mean and std need three values, std positive")

    @property
    def resolved_cache_size(self) -> int:
        if self.cache_size is not None:
            return self.cache_size
        return self.size + 32 if self.augment else self.size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DatasetConfig":
        """The inverse of :meth:`to_dict` (JSON lists become tuples); unknown keys are errors."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown DatasetConfig fields: {sorted(unknown)}")
        values = dict(data)
        for name in ("mean", "std"):
            if name in values:
                values[name] = tuple(float(v) for v in values[name])
        return cls(**values)


class SaliencyDataset(Dataset):
    """Image/mask pairs decoded once, augmented per ``(seed, epoch, index)``.

    Construction decodes every pair not already in ``cache`` (unreadable and size-mismatched
    pairs are skipped with a warning, see :mod:`csnet.data.scan`); afterwards nothing is decoded.

    ``dataset[i]`` (or ``dataset[(epoch, i)]``) is ``(image (3, size, size) float32 normalized,
    mask (1, size, size) float32 in [0, 1])`` for the current epoch (:meth:`set_epoch`); the mask
    is soft at the edges after resizing, the release's BCE target. The same sample is produced
    whatever the worker count, batch composition or resume point.
    DataLoader workers are copies: with ``persistent_workers=True`` a :meth:`set_epoch` in the
    main process does not reach them, so index with ``(epoch, i)`` tuples there.

    For augmentation on the accelerator, move :meth:`uint8_tensor` there once and call
    :meth:`gpu_augment` with :meth:`augment_params` per batch (with ``copy-paste``, also the
    donors, that tensor indexed by ``params.paste.donor_indices``); the result equals the
    per-item path.

    With the ``copy-paste`` recipe, donors are the ground-truth pairs (:attr:`donors`): every pair
    not marked :attr:`~csnet.data.pairs.ImagePair.teacher`. With none, nothing is pasted.

    Args:
        pairs: the samples (e.g. one side of :func:`~csnet.data.pairs.split_pairs`).
        config: see :class:`DatasetConfig`.
        cache: a cache to read and fill (e.g. the one :func:`scan_dataset` already filled);
            default: a new one from ``config``.
        workers: decoding threads for the first pass.
        progress: ``progress(done, total)`` during the first pass.
    """

    def __init__(self, pairs: Sequence[ImagePair], config: DatasetConfig = DatasetConfig(), *,
                 cache: SampleCache | None = None, workers: int | None = None,
                 progress: Progress | None = None) -> None:
        if cache is None:
            cache = SampleCache(config.resolved_cache_size, mask_threshold=config.mask_threshold,
                                directory=config.cache_dir)
        if cache.cache_size != config.resolved_cache_size:
            raise ValueError(f"cache holds {cache.cache_size}px samples, the config asks for "
                             f"{config.resolved_cache_size}px")
        self.config = config
        self.cache = cache
        scan, keys = _check_pairs_keyed(
            pairs, purpose="train", skip_bad=True, mask_threshold=config.mask_threshold,
            max_pixels=config.max_pixels, cache=cache, workers=workers, progress=progress,
            pairing=None)
        self.pairs: list[ImagePair] = scan.pairs
        self.report = scan.report
        self._keys: list[str] = [k for k in keys if k is not None]  # all set: there is a cache
        metas = [cache.meta(k) for k in self._keys]
        self._image_sizes: list[tuple[int, int]] = [m.image_size for m in metas if m is not None]
        # Ground truth only: a pasted teacher map would spread its mistakes to other samples.
        self._donors: list[int] = [i for i, pair in enumerate(self.pairs) if not pair.teacher]
        self._epoch = 0
        self._mean = torch.tensor(config.mean, dtype=torch.float32)
        self._std = torch.tensor(config.std, dtype=torch.float32)

    @classmethod
    def from_source(cls, source: DatasetSource, config: DatasetConfig = DatasetConfig(), *,
                    workers: int | None = None,
                    progress: Progress | None = None) -> "SaliencyDataset":
        """Scan dataset folder(s) or list file(s) and build the dataset from one decode pass.

        ``report`` then includes the unpaired and duplicate files of the scan.
        """
        cache = SampleCache(config.resolved_cache_size, mask_threshold=config.mask_threshold,
                            directory=config.cache_dir)
        pairs, report = scan_dataset(
            source, purpose="train", mask_threshold=config.mask_threshold,
            max_pixels=config.max_pixels, cache=cache, workers=workers, progress=progress)
        dataset = cls(pairs, config, cache=cache, workers=workers)  # all cache hits now
        dataset.report = report
        return dataset

    @property
    def epoch(self) -> int:
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch`` (call at the start of every epoch)."""
        self._epoch = int(epoch)

    @property
    def image_sizes(self) -> list[tuple[int, int]]:
        """``(W, H)`` of each sample's original image (the trims are in those pixels)."""
        return list(self._image_sizes)

    @property
    def donors(self) -> list[int]:
        """Indices of the ground-truth pairs: the ``copy-paste`` recipe's possible donors."""
        return list(self._donors)

    def __len__(self) -> int:
        return len(self._keys)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(item, tuple):
            epoch, index = int(item[0]), self._index(item[1])
        else:
            epoch, index = self._epoch, self._index(item)
        params = self.augment_params([index], epoch)
        images, masks = augment_batch(self.raw(index)[None], params, self.config.size,
                                      self._mean, self._std, self.donor_samples(params))
        return images[0], masks[0]

    def donor_samples(self, params: AugmentParams) -> Optional[torch.Tensor]:
        """The cached donors that ``params`` pastes, ``(K, 4, S, S)`` uint8 (CPU), or ``None``."""
        indices = [] if params.paste is None else params.paste.donor_indices
        return torch.stack([self.raw(i) for i in indices]) if indices else None

    def raw(self, index: int) -> torch.Tensor:
        """The cached sample ``index``: ``(4, S, S)`` uint8, channels R, G, B, mask."""
        array = self.cache.array(self._keys[self._index(index)])
        if not array.flags.writeable:  # a read-only memory map: torch wants its own copy
            array = np.array(array)
        return torch.from_numpy(array).permute(2, 0, 1)

    def uint8_tensor(self) -> torch.Tensor:
        """All cached samples as one ``(N, 4, S, S)`` uint8 tensor (CPU), e.g. to move to a GPU."""
        size = self.cache.cache_size
        out = torch.empty((len(self), 4, size, size), dtype=torch.uint8)
        for index in range(len(self)):
            out[index] = self.raw(index)
        return out

    def augment_params(self, indices: Sequence[int], epoch: int | None = None) -> AugmentParams:
        """Crops and flips of ``indices`` in ``epoch`` (default: the current epoch), on the CPU,
        with the recipe's extras (``strong``: rotation, zoom, colours; ``copy-paste``: donors)."""
        if not self.config.augment:
            return AugmentParams.identity(len(indices))
        config = self.config
        indices = [self._index(i) for i in indices]
        epoch = self._epoch if epoch is None else int(epoch)
        params = sample_augment_params(
            config.seed, epoch, indices, [self._image_sizes[i] for i in indices],
            max_trim=config.max_trim, flip_p=config.flip_p,
            strong=StrongAugment() if config.augment_recipe == "strong" else None)
        if config.augment_recipe != "copy-paste":
            return params
        paste = sample_paste_params(config.seed, epoch, indices, self._donors, self._image_sizes,
                                    paste=CopyPasteAugment(), max_trim=config.max_trim,
                                    flip_p=config.flip_p)
        return dataclasses.replace(params, paste=paste)

    def gpu_augment(self) -> GpuAugment:
        """A :class:`GpuAugment` with this dataset's output size and normalization."""
        return GpuAugment(self.config.size, self.config.mean, self.config.std)

    def _index(self, index: Any) -> int:
        index = operator.index(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        return index % len(self)

