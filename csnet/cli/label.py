"""``csnet label``: a teacher's soft maps for photos without masks, written once for ``csnet train``.

The label folder's ``labels.txt`` is a list file: pass it to ``csnet train --data`` beside the labelled
datasets. Interrupted labelling resumes where it stopped when run again.
"""
from __future__ import annotations

import argparse

from csnet.cli.main import CLIError


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("teacher", help="the teacher, an ONNX saliency model with a JSON card beside it")
    parser.add_argument("photos", help="folder(s) of photos without masks, comma-separated (searched recursively)")
    parser.add_argument("-o", "--out", required=True, help="label folder (maps/, labels.txt, teacher.json)")
    parser.add_argument("--card", help="the teacher's JSON card (default: TEACHER with .json)")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads (default 2)")
    parser.add_argument("--limit", type=int, help="label at most N photos")
    parser.add_argument("--exclude", help="list file or folder whose images are never labelled (held-out data)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def excluded_images(spec: str | None) -> list:
    """Image paths of a dataset (folder or list file) that must not be labelled."""
    if not spec:
        return []
    from csnet.data import DatasetError, pair_dataset

    try:
        return [pair.image for pair in pair_dataset([s for s in spec.split(",") if s])]
    except DatasetError as error:
        raise CLIError(str(error)) from None


def run(args: argparse.Namespace) -> int:
    try:
        from csnet.distill import OnnxTeacher, TeacherError, label_images
    except ImportError as error:  # onnxruntime is an extra
        raise CLIError(f"labelling needs ONNX Runtime: pip install 'csnet[onnx]' ({error})") from None
    try:
        teacher = OnnxTeacher(args.teacher, args.card, threads=args.threads)
        report = label_images(teacher, [s for s in args.photos.split(",") if s], args.out, limit=args.limit,
                              exclude=excluded_images(args.exclude), progress=not args.no_progress)
    except TeacherError as error:
        raise CLIError(str(error)) from None
    print(report.summary())
    return 1 if report.failed else 0
