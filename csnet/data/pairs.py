"""Finding image/mask pairs: dataset layouts, list files, concatenation and a stable split.

Nothing here decodes an image; :mod:`csnet.data.scan` checks the pairs found.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence, Union

__all__ = [
    "IMAGE_EXTENSIONS",
    "LAYOUTS",
    "MASK_EXTENSIONS",
    "TEACHER_LIST_HEADER",
    "DatasetError",
    "ImagePair",
    "Pairing",
    "collect_pairs",
    "detect_layout",
    "is_teacher_list",
    "pair_dataset",
    "read_list_file",
    "split_pairs",
]

logger = logging.getLogger(__name__)

DatasetSource = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]

#: ``(image folder, mask folder)`` names recognised inside a dataset folder, compared without
#: regard to case; the first that matches wins only if no other matches too.
LAYOUTS: tuple[tuple[str, str], ...] = (
    ("images", "GT"),
    ("images", "masks"),
    ("Image", "Mask"),
    ("Imgs", "GT"),
    ("DUTS-TR-Image", "DUTS-TR-Mask"),
    ("DUTS-TE-Image", "DUTS-TE-Mask"),
    ("im", "gt"),
)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
MASK_EXTENSIONS = frozenset({".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".webp"})

#: How a teacher's label list starts (``csnet label`` / :func:`csnet.distill.label_images` write
#: it as the first line of ``labels.txt``). Its pairs hold a model's soft maps, not ground truth,
#: and are marked :attr:`ImagePair.teacher`; defined here, where list files are read, so that the
#: writer and the reader share it.
TEACHER_LIST_HEADER = "# soft maps by teacher"


class DatasetError(Exception):
    """A dataset that cannot be used as asked: no layout, no pairs, or bad files in evaluation."""


@dataclass(frozen=True)
class ImagePair:
    """One training or evaluation sample.

    Attributes:
        image: path of the image.
        mask: path of its mask: ground truth, or a teacher's soft map when ``teacher``.
        key: ``<dataset folder name>/<stem>``: unique across concatenated datasets and the same
            on every machine, so it names the sample in reports and seeds the train/val split.
        teacher: the mask is a teacher's soft map, not ground truth: the pair comes from a list
            file whose first line starts with :data:`TEACHER_LIST_HEADER`. Copy-paste
            augmentation takes objects only from pairs without it, so a model's mistakes are
            not pasted into other samples.
    """

    image: Path
    mask: Path
    key: str
    teacher: bool = False

    @property
    def stem(self) -> str:
        return self.image.stem


@dataclass(frozen=True)
class Pairing:
    """What :func:`collect_pairs` found, before any file is decoded.

    Attributes:
        pairs: the pairs, in source order then by stem.
        layouts: one description per source, e.g. ``"PASCAL-S: images/ + masks/"``.
        unpaired_images / unpaired_masks: files with no partner of the same stem.
        duplicates: files skipped because another file in the same folder has the same stem.
        missing: ``(path, problem)`` for files a list file names that do not exist.
    """

    pairs: tuple[ImagePair, ...]
    layouts: tuple[str, ...]
    unpaired_images: tuple[Path, ...] = ()
    unpaired_masks: tuple[Path, ...] = ()
    duplicates: tuple[Path, ...] = ()
    missing: tuple[tuple[Path, str], ...] = field(default=())


def detect_layout(root: str | os.PathLike) -> tuple[Path, Path]:
    """The image and mask folders of a dataset folder (see :data:`LAYOUTS`).

    Raises:
        DatasetError: no known layout, or more than one (ambiguous: use a list file).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    folders = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    found = []
    for image_name, mask_name in LAYOUTS:
        image_dir, mask_dir = folders.get(image_name.lower()), folders.get(mask_name.lower())
        if image_dir is not None and mask_dir is not None and (image_dir, mask_dir) not in found:
            found.append((image_dir, mask_dir))
    if not found:
        known = ", ".join(f"{i}/+{m}/" for i, m in LAYOUTS)
        present = ", ".join(sorted(p.name for p in folders.values())) or "none"
        raise DatasetError(f"no dataset layout recognised in {root} (folders: {present}; "
                           f"known layouts: {known}; or pass a list file of 'image mask' lines)")
    if len(found) > 1:
        options = "; ".join(f"{i.name}/ + {m.name}/" for i, m in found)
        raise DatasetError(f"ambiguous dataset layout in {root}: {options} (pass a list file)")
    return found[0]


def read_list_file(path: str | os.PathLike) -> list[tuple[Path, Path]]:
    """Read ``image mask`` lines; relative paths are relative to the list file's folder.

    Blank lines and lines starting with ``#`` are skipped. Fields are separated by a tab if the
    line has one (so paths may contain spaces), otherwise by whitespace.

    Raises:
        DatasetError: a line without exactly two fields, or the file cannot be read.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"cannot read list file {path}: {error}") from error
    base = path.parent
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f.strip() for f in line.split("\t")] if "\t" in line else line.split()
        if len(fields) != 2:
            raise DatasetError(f"{path}:{number}: expected 'image mask', got {line!r}")
        entries.append((base / fields[0], base / fields[1]))
    return entries


def is_teacher_list(path: str | os.PathLike) -> bool:
    """Whether the list file at ``path`` is a teacher's label list (:data:`TEACHER_LIST_HEADER`)."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().startswith(TEACHER_LIST_HEADER)
    except (OSError, UnicodeDecodeError):
        return False


def collect_pairs(source: DatasetSource) -> Pairing:
    """Pair images and masks of one or more datasets, without decoding anything.

    Args:
        source: a dataset folder (layout auto-detected), a list file, several of either as a
            sequence or as one comma-separated string (``"DUTS-TR,HumanSeg"``).

    Raises:
        DatasetError: a source with no recognisable layout, or no pairs at all.
    """
    all_pairs: list[ImagePair] = []
    layouts, unpaired_images, unpaired_masks, duplicates, missing = [], [], [], [], []
    for src in _split_sources(source):
        if src.is_file():
            name = src.resolve().parent.name
            teacher = is_teacher_list(src)
            layouts.append(f"{name}: {'teacher ' if teacher else ''}list file {src.name}")
            for image, mask in read_list_file(src):
                absent = [p for p in (image, mask) if not p.is_file()]
                if absent:
                    missing.extend((p, "file not found") for p in absent)
                    continue
                # The listed path (less its suffix) keeps keys unique when stems repeat.
                relative = Path(os.path.relpath(image, src.parent)).with_suffix("").as_posix()
                all_pairs.append(ImagePair(image, mask, f"{name}/{relative}", teacher))
            continue
        image_dir, mask_dir = detect_layout(src)
        name = src.resolve().name
        layouts.append(f"{name}: {image_dir.name}/ + {mask_dir.name}/")
        images, dup_images = _files_by_stem(image_dir, IMAGE_EXTENSIONS)
        masks, dup_masks = _files_by_stem(mask_dir, MASK_EXTENSIONS)
        duplicates += dup_images + dup_masks
        for stem in sorted(images):
            if stem in masks:
                all_pairs.append(ImagePair(images[stem], masks[stem], f"{name}/{stem}"))
            else:
                unpaired_images.append(images[stem])
        unpaired_masks += [masks[stem] for stem in sorted(masks) if stem not in images]

    pairing = Pairing(tuple(all_pairs), tuple(layouts), tuple(unpaired_images),
                      tuple(unpaired_masks), tuple(duplicates), tuple(missing))
    if unpaired_images or unpaired_masks:
        logger.warning("%d images without a mask and %d masks without an image are ignored",
                       len(unpaired_images), len(unpaired_masks))
    if duplicates:
        logger.warning("%d files ignored: another file in the same folder has the same stem",
                       len(duplicates))
    if missing:
        logger.warning("%d files named by list files do not exist", len(missing))
    if not all_pairs:
        raise DatasetError(f"no image/mask pairs found in {source}")
    return pairing


def pair_dataset(source: DatasetSource) -> list[ImagePair]:
    """The image/mask pairs of ``source`` (see :func:`collect_pairs`), without decoding them.

    Unpaired, duplicate and missing files are logged and left out; use
    :func:`csnet.data.scan.scan_dataset` for the full report and a check of every file.
    """
    return list(collect_pairs(source).pairs)


def split_pairs(pairs: Sequence[ImagePair], val_fraction: float,
                seed: int = 0) -> tuple[list[ImagePair], list[ImagePair]]:
    """Split into training and validation pairs, the same way on every run and machine.

    Pairs are ranked by a keyed BLAKE2 hash of ``(seed, pair.key)`` (never Python's ``hash()``,
    which is salted per process) and the lowest ``round(len * val_fraction)`` go to validation
    (at least one when ``val_fraction > 0`` and there are two pairs or more). Both lists keep the
    input order.

    Returns:
        ``(train, val)``.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = round(len(pairs) * val_fraction)
    if val_fraction > 0 and n_val == 0 and len(pairs) >= 2:
        n_val = 1
    ranked = sorted(range(len(pairs)), key=lambda i: (
        hashlib.blake2b(f"{seed}\0{pairs[i].key}".encode(), digest_size=8).digest(),
        pairs[i].key, i))
    val_ids = set(ranked[:n_val])
    train = [p for i, p in enumerate(pairs) if i not in val_ids]
    val = [p for i, p in enumerate(pairs) if i in val_ids]
    return train, val


def _split_sources(source: DatasetSource) -> list[Path]:
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        # A path that exists as given wins over splitting, so folder names may contain commas.
        parts = [text] if Path(text).exists() or "," not in text else text.split(",")
    else:
        parts = [os.fspath(s) for s in source]
    paths = [Path(p.strip()).expanduser() for p in parts if p.strip()]
    if not paths:
        raise DatasetError("no dataset given")
    return paths


def _files_by_stem(folder: Path, extensions: Iterable[str]) -> tuple[dict[str, Path], list[Path]]:
    """Files of ``folder`` by stem; hidden files (e.g. macOS ``._x.jpg``) are not samples."""
    by_stem: dict[str, Path] = {}
    duplicates: list[Path] = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in extensions or not path.is_file():
            continue
        if path.stem in by_stem:
            duplicates.append(path)  # sorted order: the first name alphabetically is kept
        else:
            by_stem[path.stem] = path
    return by_stem, duplicates
