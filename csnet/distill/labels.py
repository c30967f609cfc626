"""Label unlabelled photos once with a teacher; the trainer reads the result as an ordinary list file.

A label folder holds::

    teacher.json        the teacher's protocol, name, licence and the model file's sha256
    maps/<source>/...   one 8-bit PNG soft map per photo, at the photo's size
    labels.txt          "image<TAB>map" lines (absolute image paths, maps relative to the folder)

Maps are written atomically and labelling skips maps that exist, so a killed run resumes where it
stopped. The folder is tied to one teacher: labelling it again with another model is refused, because
mixing two teachers' maps silently would make the training data depend on the order of commands.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from csnet.data.pairs import IMAGE_EXTENSIONS, TEACHER_LIST_HEADER
from csnet.distill.teacher import OnnxTeacher, TeacherError
from csnet.io.atomic import atomic_write_text
from csnet.io.images import ImageLoadError, load_image, save_png

__all__ = ["LABELS_FILE", "LabelReport", "find_images", "label_images", "file_sha256"]

logger = logging.getLogger(__name__)

LABELS_FILE = "labels.txt"
TEACHER_FILE = "teacher.json"


@dataclass
class LabelReport:
    """What :func:`label_images` did."""

    folder: Path
    labelled: int = 0
    reused: int = 0
    failed: list[str] = field(default_factory=list)

    @property
    def list_file(self) -> Path:
        return self.folder / LABELS_FILE

    def summary(self) -> str:
        text = f"{self.labelled} maps written, {self.reused} reused -> {self.list_file}"
        return text + (f"; {len(self.failed)} images failed" if self.failed else "")


def file_sha256(path: Union[str, os.PathLike]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_images(sources: Iterable[Union[str, os.PathLike]]) -> list[tuple[str, Path, Path]]:
    """``(source name, root, image path)`` for every image under each folder, recursively, sorted.

    Raises:
        TeacherError: a source that is not a folder.
    """
    found = []
    for source in sources:
        root = Path(source)
        if not root.is_dir():
            raise TeacherError(f"unlabelled photos: {root} is not a folder")
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        found.extend((root.name, root, p) for p in files)
    return found


def _check_teacher_folder(folder: Path, identity: dict) -> None:
    path = folder / TEACHER_FILE
    if path.exists():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise TeacherError(f"cannot read {path}: {error}") from None
        if previous.get("sha256") != identity["sha256"] or previous.get("protocol") != identity["protocol"]:
            raise TeacherError(f"{folder} holds maps of another teacher ({previous.get('name')}, sha256 "
                               f"{str(previous.get('sha256'))[:12]}); label into a new folder")
    else:
        atomic_write_text(path, json.dumps(identity, indent=1) + "\n")


def label_images(teacher: OnnxTeacher, sources: Sequence[Union[str, os.PathLike]],
                 folder: Union[str, os.PathLike], *, limit: Optional[int] = None,
                 exclude: Iterable[Union[str, os.PathLike]] = (), progress: bool = True) -> LabelReport:
    """Write the teacher's soft map of every photo under ``sources`` into ``folder``.

    Args:
        teacher: the model that labels.
        sources: folders of photos (searched recursively).
        folder: the label folder (created; resumable).
        limit: label at most this many photos (the first in sorted order).
        exclude: image paths never to label (e.g. held-out evaluation images).
        progress: show a progress bar.

    Returns:
        The report; ``labels.txt`` lists every photo that has a map, including maps made before.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    identity = {"name": teacher.protocol.name, "licence": teacher.protocol.licence,
                "model": teacher.model_path.name, "sha256": file_sha256(teacher.model_path),
                "protocol": teacher.protocol.to_dict()}
    _check_teacher_folder(folder, identity)
    excluded = {Path(p).resolve() for p in exclude}
    images = [item for item in find_images(sources) if item[2].resolve() not in excluded]
    if limit is not None:
        images = images[:limit]
    report = LabelReport(folder)
    lines = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(images), desc="labelling", unit="image", dynamic_ncols=True)
    try:
        for source_name, root, image_path in images:
            map_rel = Path("maps") / source_name / image_path.relative_to(root).with_suffix(".png")
            map_path = folder / map_rel
            if map_path.exists():
                report.reused += 1
            else:
                try:
                    image = load_image(image_path)
                except ImageLoadError as error:
                    logger.error("%s", error)
                    report.failed.append(str(image_path))
                    if bar is not None:
                        bar.update()
                    continue
                soft = teacher.predict(image)
                save_png(map_path, np.round(soft * 255.0).astype(np.uint8))
                report.labelled += 1
            lines.append(f"{image_path.resolve()}\t{map_rel.as_posix()}")
            if bar is not None:
                bar.update()
    finally:
        if bar is not None:
            bar.close()
        # Written even when interrupted, so the maps made so far are usable at once.
        atomic_write_text(folder / LABELS_FILE, f"{TEACHER_LIST_HEADER} {identity['name']} "
                          f"(sha256 {identity['sha256'][:12]})\n" + "\n".join(lines) + "\n")
    return report
