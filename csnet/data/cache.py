"""Decode once: samples resized to a fixed square and kept as uint8, in memory or on disk.

Decoding a JPEG costs milliseconds; an epoch of DUTS-TR decodes 10,553 of them. The cache keeps
each pair as one ``(S, S, 4)`` uint8 array (RGB + mask) at the cache resolution ``S``, so that
training only crops, flips and resizes (see :mod:`csnet.data.augment`).

On disk, each sample is ``<dir>/<key[:2]>/<key>.npy`` (memory-mapped when read) with a
``<key>.json`` of its metadata; the key hashes both files' absolute paths, modification times
and sizes with the cache resolution and mask threshold, so an edited file or a changed setting
never reads a stale entry.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from csnet.data.pairs import ImagePair
from csnet.io.atomic import atomic_path, atomic_write_text

__all__ = ["CACHE_VERSION", "SampleCache", "SampleMeta", "resize_sample"]

#: Bump when the cached content changes meaning, so old disk caches are ignored.
CACHE_VERSION = 1


@dataclass(frozen=True)
class SampleMeta:
    """What the scan learned about a pair, kept beside the cached pixels.

    Attributes:
        image_size: ``(W, H)`` of the image after EXIF orientation.
        mask_size: ``(W, H)`` of the mask.
        mask_kind: ``"binary"`` (only 0 and 255), ``"labels"`` (0/1, scaled to 0/255),
            ``"thresholded"`` (gray levels, binarized) or ``"soft"`` (gray levels kept).
    """

    image_size: tuple[int, int]
    mask_size: tuple[int, int]
    mask_kind: str

    @classmethod
    def from_dict(cls, data: dict) -> "SampleMeta":
        return cls(tuple(data["image_size"]), tuple(data["mask_size"]), str(data["mask_kind"]))


def resize_sample(image: np.ndarray, mask: np.ndarray, size: int) -> np.ndarray:
    """Resize an image and its mask to ``size x size`` and stack them.

    Bilinear, ``align_corners=False``, no antialiasing: the release's resize (SPEC 4). Rounded
    back to uint8, which moves values by at most half a gray level.

    Args:
        image: ``(H, W, 3)`` uint8.
        mask: ``(H, W)`` uint8 (a mask of another size is resized on its own).

    Returns:
        ``(size, size, 4)`` uint8, channels R, G, B, mask.
    """
    def resize(x: np.ndarray) -> torch.Tensor:  # (H, W, C) uint8 -> (C, size, size) float
        t = torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].float()
        if t.shape[-2:] != (size, size):
            t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=False)
        return t[0]

    out = torch.cat([resize(image), resize(mask[:, :, None])], dim=0)
    out = out.round_().clamp_(0, 255).to(torch.uint8)
    return out.permute(1, 2, 0).contiguous().numpy()


class SampleCache:
    """Resized uint8 samples keyed by file identity, in memory (default) or in a folder.

    Args:
        cache_size: the side ``S`` of the cached square.
        mask_threshold: the mask binarization the cached masks carry (see
            :func:`csnet.data.scan.normalize_mask`); part of the key.
        directory: a folder for ``.npy`` files that outlive the process; ``None`` keeps the
            samples in this process's memory only.

    Thread-safe for the scan's worker threads: entries are only added, each by one thread.
    """

    def __init__(self, cache_size: int, *, mask_threshold: int | None = 128,
                 directory: str | os.PathLike | None = None) -> None:
        if cache_size < 1:
            raise ValueError(f"cache_size must be positive, got {cache_size}")
        self.cache_size = int(cache_size)
        self.mask_threshold = mask_threshold
        self.directory = Path(directory) if directory is not None else None
        self._arrays: dict[str, np.ndarray] = {}
        self._metas: dict[str, SampleMeta] = {}

    def key(self, pair: ImagePair) -> str:
        """The entry name for ``pair`` in its files' current state.

        Raises:
            OSError: a file of the pair cannot be ``stat``-ed (missing, no permission).
        """
        parts = [f"v{CACHE_VERSION}", str(self.cache_size), str(self.mask_threshold)]
        for path in (pair.image, pair.mask):
            stat = os.stat(path)
            parts += [str(Path(path).resolve()), str(stat.st_mtime_ns), str(stat.st_size)]
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]

    def meta(self, key: str) -> SampleMeta | None:
        """The metadata of a cached sample, or ``None`` if ``key`` is not cached."""
        meta = self._metas.get(key)
        if meta is None and self.directory is not None:
            try:
                meta = SampleMeta.from_dict(json.loads(self._path(key, ".json").read_text()))
            except (OSError, ValueError, KeyError, TypeError):
                return None  # absent or damaged: the sample is decoded again
            if not self._path(key, ".npy").is_file():
                return None
            self._metas[key] = meta
        return meta

    def array(self, key: str) -> np.ndarray:
        """The cached ``(S, S, 4)`` uint8 sample (read-only when memory-mapped from disk).

        Raises:
            KeyError: ``key`` is not cached.
        """
        if key in self._arrays:
            return self._arrays[key]
        if self.directory is None:
            raise KeyError(key)
        try:
            return np.load(self._path(key, ".npy"), mmap_mode="r")
        except FileNotFoundError as error:
            raise KeyError(key) from error

    def put(self, key: str, sample: np.ndarray, meta: SampleMeta) -> None:
        """Store a ``(S, S, 4)`` uint8 sample and its metadata."""
        expected = (self.cache_size, self.cache_size, 4)
        if sample.shape != expected or sample.dtype != np.uint8:
            raise ValueError(f"cache sample must be {expected} uint8, got "
                             f"{sample.shape} {sample.dtype}")
        if self.directory is None:
            self._arrays[key] = sample
        else:
            # Pixels first, metadata last: an entry counts only once its .json exists.
            with atomic_path(self._path(key, ".npy")) as tmp:
                np.save(tmp, sample)
            atomic_write_text(self._path(key, ".json"), json.dumps(asdict(meta)))
        self._metas[key] = meta

    def _path(self, key: str, suffix: str) -> Path:
        assert self.directory is not None
        return self.directory / key[:2] / f"{key}{suffix}"
