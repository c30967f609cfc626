"""Checking a dataset: decode every pair once, report what is wrong, optionally fill a cache.

Policy (SPEC 4 training, and evaluation):

- unreadable files and image/mask size mismatches: skipped with a warning in training; in
  evaluation an error (:class:`~csnet.data.pairs.DatasetError`) unless ``skip_bad``;
- unpaired and duplicate files: left out with a warning;
- masks with gray levels other than 0 and 255: binarized (``value > mask_threshold``, the
  metrics' own ground-truth rule) and counted; masks holding only 0 and 1 are label maps and
  are scaled to 0/255 rather than thresholded to nothing.
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, NamedTuple, Sequence

import numpy as np

from csnet.data.cache import SampleCache, SampleMeta, resize_sample
from csnet.data.pairs import DatasetError, DatasetSource, ImagePair, Pairing, collect_pairs
from csnet.io.images import DEFAULT_MAX_PIXELS, ImageLoadError, load_image, load_mask

__all__ = ["DatasetScan", "ScanReport", "check_pairs", "normalize_mask", "scan_dataset"]

logger = logging.getLogger(__name__)

Purpose = Literal["train", "eval"]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ScanReport:
    """What a scan found.

    Attributes:
        layouts: one line per source (see :class:`~csnet.data.pairs.Pairing`).
        n_found: pairs found by name.
        n_usable: pairs that decoded and passed the checks (the pairs returned).
        unpaired_images / unpaired_masks / duplicates: files left out before decoding.
        unreadable: ``(path, problem)`` for files that could not be decoded or do not exist.
        size_mismatches: ``(image, mask, image (W, H), mask (W, H))``.
        nonbinary_masks: masks with gray levels, binarized (or kept soft without a threshold).
        label_masks: masks holding only 0 and 1, scaled to 0/255.
        skipped: ``True`` if bad pairs were left out (training, or ``skip_bad``).
    """

    layouts: tuple[str, ...]
    n_found: int
    n_usable: int
    unpaired_images: tuple[Path, ...] = ()
    unpaired_masks: tuple[Path, ...] = ()
    duplicates: tuple[Path, ...] = ()
    unreadable: tuple[tuple[Path, str], ...] = ()
    size_mismatches: tuple[tuple[Path, Path, tuple[int, int], tuple[int, int]], ...] = ()
    nonbinary_masks: tuple[Path, ...] = ()
    label_masks: tuple[Path, ...] = ()
    skipped: bool = False

    @property
    def ok(self) -> bool:
        """No file was unreadable or mismatched (unpaired or gray masks are not errors)."""
        return not self.unreadable and not self.size_mismatches

    def problems(self, limit: int = 5) -> list[str]:
        """Up to ``limit`` one-line descriptions of unreadable and mismatched files."""
        lines = [f"{path}: {problem}" for path, problem in self.unreadable]
        lines += [f"{image} is {iw}x{ih} but its mask {mask} is {mw}x{mh}"
                  for image, mask, (iw, ih), (mw, mh) in self.size_mismatches]
        return lines[:limit]

    def summary(self) -> str:
        """A few human-readable lines for the CLI and logs."""
        lines = [f"datasets: {'; '.join(self.layouts)}",
                 f"pairs: {self.n_usable} usable of {self.n_found} found"]
        counts = [("unpaired images", len(self.unpaired_images)),
                  ("unpaired masks", len(self.unpaired_masks)),
                  ("duplicate stems", len(self.duplicates)),
                  ("unreadable files", len(self.unreadable)),
                  ("size mismatches", len(self.size_mismatches)),
                  ("non-binary masks (thresholded)", len(self.nonbinary_masks)),
                  ("0/1 label masks (scaled)", len(self.label_masks))]
        lines += [f"{name}: {count}" for name, count in counts if count]
        lines += [f"  {line}" for line in self.problems()]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-ready: paths as strings."""
        return {
            "layouts": list(self.layouts), "n_found": self.n_found, "n_usable": self.n_usable,
            "unpaired_images": [str(p) for p in self.unpaired_images],
            "unpaired_masks": [str(p) for p in self.unpaired_masks],
            "duplicates": [str(p) for p in self.duplicates],
            "unreadable": [[str(p), problem] for p, problem in self.unreadable],
            "size_mismatches": [[str(i), str(m), list(si), list(sm)]
                                for i, m, si, sm in self.size_mismatches],
            "nonbinary_masks": [str(p) for p in self.nonbinary_masks],
            "label_masks": [str(p) for p in self.label_masks],
            "skipped": self.skipped,
        }


class DatasetScan(NamedTuple):
    """``pairs, report = scan_dataset(...)``."""

    pairs: list[ImagePair]
    report: ScanReport


def normalize_mask(mask: np.ndarray, threshold: int | None = 128) -> tuple[np.ndarray, str]:
    """Bring a ground-truth mask to 0/255.

    Args:
        mask: ``(H, W)`` uint8 as decoded by :func:`csnet.io.images.load_mask`.
        threshold: gray levels ``> threshold`` become 255, the rest 0; ``None`` keeps them.

    Returns:
        ``(mask (H, W) uint8, kind)`` with ``kind`` one of ``"binary"``, ``"labels"``,
        ``"thresholded"``, ``"soft"`` (see :class:`~csnet.data.cache.SampleMeta`).
    """
    # One histogram answers every question below, without temporary boolean images.
    counts = np.bincount(mask.ravel(), minlength=256)
    present = np.flatnonzero(counts)
    if set(present.tolist()) <= {0, 255}:
        return mask, "binary"
    if set(present.tolist()) <= {0, 1}:
        return mask * np.uint8(255), "labels"
    if threshold is None:
        return mask, "soft"
    return np.where(mask > threshold, np.uint8(255), np.uint8(0)), "thresholded"


def scan_dataset(source: DatasetSource, *, purpose: Purpose = "train", skip_bad: bool = False,
                 mask_threshold: int | None = 128, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 cache: SampleCache | None = None, workers: int | None = None,
                 progress: Progress | None = None) -> DatasetScan:
    """Find the pairs of ``source``, decode each once and report problems.

    Args:
        source: dataset folder(s) or list file(s), see :func:`csnet.data.pairs.collect_pairs`.
        purpose: ``"train"`` skips bad pairs with a warning; ``"eval"`` raises on them.
        skip_bad: in evaluation, skip bad pairs (with a warning) instead of raising.
        mask_threshold: binarization of gray masks (see :func:`normalize_mask`).
        max_pixels: larger images count as unreadable.
        cache: fill this cache while decoding (one decode serves the scan and training) and
            answer from it without decoding where the files are unchanged; its
            ``mask_threshold`` must equal ``mask_threshold``.
        workers: decoding threads (Pillow and torch release the GIL); default: CPU count, at
            most 8.
        progress: called as ``progress(done, total)`` after each pair.

    Returns:
        ``(pairs, report)``: the usable pairs in source order, and the :class:`ScanReport`.

    Raises:
        DatasetError: nothing found, or bad pairs in evaluation without ``skip_bad``.
    """
    pairing = collect_pairs(source)
    return check_pairs(pairing.pairs, purpose=purpose, skip_bad=skip_bad,
                       mask_threshold=mask_threshold, max_pixels=max_pixels, cache=cache,
                       workers=workers, progress=progress, pairing=pairing)


def check_pairs(pairs: Sequence[ImagePair], *, purpose: Purpose = "train", skip_bad: bool = False,
                mask_threshold: int | None = 128, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                cache: SampleCache | None = None, workers: int | None = None,
                progress: Progress | None = None, pairing: Pairing | None = None) -> DatasetScan:
    """:func:`scan_dataset` for pairs already found (e.g. one side of :func:`split_pairs`).

    ``pairing``, if given, adds its unpaired, duplicate and missing files to the report.
    """
    scan, _ = _check_pairs_keyed(pairs, purpose=purpose, skip_bad=skip_bad,
                                 mask_threshold=mask_threshold, max_pixels=max_pixels,
                                 cache=cache, workers=workers, progress=progress, pairing=pairing)
    return scan


class _Outcome(NamedTuple):
    pair: ImagePair
    key: str | None
    meta: SampleMeta | None
    unreadable: tuple[tuple[Path, str], ...] = ()


def _check_one(pair: ImagePair, threshold: int | None, max_pixels: int | None,
               cache: SampleCache | None) -> _Outcome:
    key = None
    if cache is not None:
        try:
            key = cache.key(pair)
        except OSError as error:
            path = pair.image if not os.path.exists(pair.image) else pair.mask
            problem = ("file not found" if isinstance(error, FileNotFoundError)
                       else f"unreadable ({error.strerror})")
            return _Outcome(pair, None, None, ((Path(path), problem),))
        meta = cache.meta(key)
        if meta is not None:
            return _Outcome(pair, key, meta)

    bad = []
    image = mask = None
    try:
        image = load_image(pair.image, max_pixels=max_pixels)
    except ImageLoadError as error:
        bad.append((pair.image, error.problem))
    try:
        mask = load_mask(pair.mask, max_pixels=max_pixels)
    except ImageLoadError as error:
        bad.append((pair.mask, error.problem))
    if image is None or mask is None:
        return _Outcome(pair, key, None, tuple(bad))

    mask, kind = normalize_mask(mask, threshold)
    meta = SampleMeta((image.shape[1], image.shape[0]), (mask.shape[1], mask.shape[0]), kind)
    if cache is not None and key is not None and meta.image_size == meta.mask_size:
        cache.put(key, resize_sample(image, mask, cache.cache_size), meta)
    return _Outcome(pair, key, meta)


def _check_pairs_keyed(pairs: Sequence[ImagePair], *, purpose: Purpose, skip_bad: bool,
                       mask_threshold: int | None, max_pixels: int | None,
                       cache: SampleCache | None, workers: int | None, progress: Progress | None,
                       pairing: Pairing | None) -> tuple[DatasetScan, list[str | None]]:
    """The scan, plus the cache key of each usable pair (``None`` without a cache)."""
    if purpose not in ("train", "eval"):
        raise ValueError(f"purpose must be 'train' or 'eval', got {purpose!r}")
    if cache is not None and cache.mask_threshold != mask_threshold:
        raise ValueError(f"cache holds masks thresholded at {cache.mask_threshold}, "
                         f"the scan asks for {mask_threshold}")
    workers = workers or min(8, os.cpu_count() or 1)

    def run(pair: ImagePair) -> _Outcome:
        return _check_one(pair, mask_threshold, max_pixels, cache)

    outcomes: list[_Outcome] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="csnet-scan") as pool:
        for outcome in (pool.map if workers > 1 else map)(run, pairs):
            outcomes.append(outcome)
            if progress is not None:
                progress(len(outcomes), len(pairs))

    unreadable = list(pairing.missing) if pairing is not None else []
    mismatches, nonbinary, labels, good, keys = [], [], [], [], []
    for outcome in outcomes:
        if outcome.meta is None:
            unreadable.extend(outcome.unreadable)
            continue
        meta = outcome.meta
        if meta.image_size != meta.mask_size:
            mismatches.append((outcome.pair.image, outcome.pair.mask, meta.image_size,
                               meta.mask_size))
            continue
        if meta.mask_kind in ("thresholded", "soft"):
            nonbinary.append(outcome.pair.mask)
        elif meta.mask_kind == "labels":
            labels.append(outcome.pair.mask)
        good.append(outcome.pair)
        keys.append(outcome.key)

    report = ScanReport(
        layouts=pairing.layouts if pairing is not None else (),
        n_found=len(pairs), n_usable=len(good),
        unpaired_images=pairing.unpaired_images if pairing is not None else (),
        unpaired_masks=pairing.unpaired_masks if pairing is not None else (),
        duplicates=pairing.duplicates if pairing is not None else (),
        unreadable=tuple(unreadable), size_mismatches=tuple(mismatches),
        nonbinary_masks=tuple(nonbinary), label_masks=tuple(labels),
        skipped=bool(unreadable or mismatches))

    if not report.ok:
        detail = "; ".join(report.problems(3))
        message = (f"{len(unreadable)} unreadable files and {len(mismatches)} image/mask size "
                   f"mismatches")
        if purpose == "eval" and not skip_bad:
            raise DatasetError(f"{message} (pass skip_bad to leave them out): {detail}")
        logger.warning("%s; those pairs are skipped: %s", message, detail)
    if nonbinary and mask_threshold is not None:
        logger.info("%d masks had gray levels and were binarized at > %d", len(nonbinary),
                    mask_threshold)
    if not good:
        raise DatasetError("no usable image/mask pairs" + (f": {detail}" if not report.ok else ""))
    return DatasetScan(good, report), keys
