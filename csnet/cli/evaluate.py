"""``csnet evaluate``: score saliency maps (``--pred DIR --gt DIR``) or a model (``[--model M] --data DIR``).

Scores are the SPEC 4 metrics of :class:`csnet.metrics.SODEvaluator` (max/mean/adaptive F with beta^2 = 0.3,
MAE, S, max/mean/adaptive E, weighted F). With ``--data`` the model predicts through the test protocol of
:mod:`csnet.infer.protocol` and the uint8 maps it would save are scored, so the figures are those of saving
the maps as PNG and scoring them with ``--pred``.
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from csnet.cli.main import CLIError

# TODO(merge): switch to csnet.data.pairs (layouts, pairing) and csnet.io.images (decoding) once they land;
# these local helpers only exist so that this command did not wait for them.
_IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
# (image folder, mask folder) names of a dataset folder, compared without regard to case.
_LAYOUTS = (("images", "masks"), ("images", "gt"), ("image", "mask"), ("imgs", "gt"), ("im", "gt"))
# Mask-folder names too generic to name a dataset: --gt PASCAL-S/masks reports "PASCAL-S".
_GENERIC_NAMES = frozenset({"gt", "gts", "mask", "masks", "ground_truth", "groundtruth", "labels"})
_COLUMNS = ("maxF", "meanF", "adpF", "MAE", "S", "maxE", "meanE", "adpE", "wF", "n")
_SHOWN_PROBLEMS = 5


def add_parser(parser: argparse.ArgumentParser) -> None:
    what = parser.add_argument_group("what to score (either --pred and --gt, or --data)")
    what.add_argument("--pred", metavar="DIR", help="folder of saliency maps, paired with --gt by file stem")
    what.add_argument("--gt", metavar="DIR", help="folder of ground-truth masks (foreground > 128)")
    what.add_argument("--name", help="dataset name in reports with --pred (default: the --gt folder's name, "
                                     "or its parent's for generic names such as masks/ or GT/)")
    what.add_argument("--data", metavar="DIR[,DIR]", action="append",
                      help="dataset folder(s) with images and masks paired by stem (images/+masks/, "
                           "images/+GT/, Image/+Mask/, Imgs/+GT/, im/+gt/); the model predicts them")
    model = parser.add_argument_group("model (with --data)")
    model.add_argument("--model", metavar="M", help="registered model name or .safetensors file "
                                                   "(default: the default model)")
    model.add_argument("--device", default="cpu", help="torch device (default cpu)")
    model.add_argument("--batch-size", type=int, default=8, metavar="N", help="images per forward (default 8)")
    out = parser.add_argument_group("output")
    out.add_argument("--csv", metavar="FILE", help="write the scores as CSV, one row per dataset")
    out.add_argument("--json", metavar="FILE", help="write the scores as JSON, a list with one object per dataset")
    out.add_argument("--plot", metavar="DIR", help="write PR and F-threshold curves as PNG (needs csnet[plot])")
    parser.add_argument("--skip-bad", action="store_true",
                        help="warn about and skip unpaired or unreadable files instead of stopping")


@dataclass
class _Dataset:
    name: str
    pairs: list[tuple[Path, Path]]  # (image or map, mask), sorted by stem


def _listing(folder: Path, what: str) -> dict[str, list[Path]]:
    if not folder.is_dir():
        raise CLIError(f"{what} folder not found: {folder}")
    files: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in _IMAGE_EXTENSIONS and not path.name.startswith("."):
            files.setdefault(path.stem, []).append(path)
    return files


def _pair_by_stem(first: Path, second: Path, first_what: str, second_what: str,
                  skip_bad: bool) -> list[tuple[Path, Path]]:
    """Pairs of files with the same stem in two folders; unpaired or ambiguous stems are errors or skipped."""
    a, b = _listing(first, first_what), _listing(second, second_what)
    problems = []
    only_a = sorted(set(a) - set(b))
    only_b = sorted(set(b) - set(a))
    if only_a:
        problems.append(f"{len(only_a)} {first_what} file(s) in {first} without a {second_what} "
                        f"({_names(a[s][0].name for s in only_a)})")
    if only_b:
        problems.append(f"{len(only_b)} {second_what} file(s) in {second} without a {first_what} "
                        f"({_names(b[s][0].name for s in only_b)})")
    ambiguous = sorted(s for s in set(a) & set(b) if len(a[s]) > 1 or len(b[s]) > 1)
    if ambiguous:
        problems.append(f"{len(ambiguous)} stem(s) with several files "
                        f"({_names(p.name for s in ambiguous for p in a[s] + b[s])})")
    _report(problems, skip_bad)
    return [(a[s][0], b[s][0]) for s in sorted(set(a) & set(b)) if s not in ambiguous]


def _names(names: Iterator[str]) -> str:
    names = list(names)
    shown = ", ".join(names[:_SHOWN_PROBLEMS])
    return shown + (f", ... {len(names) - _SHOWN_PROBLEMS} more" if len(names) > _SHOWN_PROBLEMS else "")


def _report(problems: list[str], skip_bad: bool) -> None:
    if not problems:
        return
    if not skip_bad:
        raise CLIError("; ".join(problems) + " (use --skip-bad to skip them)")
    for problem in problems:
        _warn(f"skipping {problem}")


def _warn(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"warning: {message}", file=sys.stderr)  # does not break a progress bar


def _detect_layout(root: Path) -> tuple[Path, Path]:
    if not root.is_dir():
        raise CLIError(f"dataset folder not found: {root}")
    folders = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    found = [(folders[i], folders[m]) for i, m in _LAYOUTS if i in folders and m in folders]
    if not found:
        known = ", ".join(f"{i}/+{m}/" for i, m in _LAYOUTS)
        raise CLIError(f"no images/masks folders in {root} (known layouts, any case: {known})")
    if len(found) > 1:
        raise CLIError(f"ambiguous layout in {root}: " + "; ".join(f"{i.name}/+{m.name}/" for i, m in found))
    return found[0]


def _read(path: Path, mode: str) -> np.ndarray:
    """uint8 H x W (mode "L") or H x W x 3 (mode "RGB"), EXIF orientation applied. Raises ValueError."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            return np.asarray(image.convert(mode))
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as error:
        raise ValueError(f"cannot read {path}: {error}") from None


def _dataset_name(gt_dir: Path) -> str:
    gt_dir = gt_dir.resolve()
    if gt_dir.name.lower() in _GENERIC_NAMES and gt_dir.parent.name:
        return gt_dir.parent.name
    return gt_dir.name


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return out


def _datasets(args: argparse.Namespace) -> list[_Dataset]:
    if args.pred:
        pairs = _pair_by_stem(Path(args.pred), Path(args.gt), "map", "mask", args.skip_bad)
        return [_Dataset(args.name or _dataset_name(Path(args.gt)), pairs)]
    roots = [Path(d) for spec in args.data for d in spec.split(",") if d]
    if not roots:
        raise CLIError("--data needs at least one folder")
    datasets = []
    names = _unique([root.resolve().name for root in roots])
    for root, name in zip(roots, names):
        image_dir, mask_dir = _detect_layout(root)
        datasets.append(_Dataset(name, _pair_by_stem(image_dir, mask_dir, "image", "mask", args.skip_bad)))
    return datasets


def _check_args(args: argparse.Namespace) -> None:
    if bool(args.pred) == bool(args.data):
        raise CLIError("give either --pred DIR --gt DIR (score maps) or --data DIR (score a model)")
    if args.pred and not args.gt:
        raise CLIError("--pred needs --gt DIR (the ground-truth masks)")
    if args.data and args.gt:
        raise CLIError("--gt goes with --pred; with --data the masks are found inside each dataset folder")
    if args.pred and args.model:
        raise CLIError("--model goes with --data; --pred scores maps that already exist")
    if args.data and args.name:
        raise CLIError("--name goes with --pred; with --data datasets are named after their folders")
    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.plot and importlib.util.find_spec("matplotlib") is None:  # fail before a long evaluation
        raise CLIError("--plot needs matplotlib: pip install 'csnet[plot]'")


def _load_model(args: argparse.Namespace):
    from csnet.models import DEFAULT_MODEL, ModelFileError, load_model

    name = args.model or DEFAULT_MODEL
    try:
        return load_model(name, device=args.device)
    except ModelFileError as error:
        raise CLIError(str(error)) from None
    except (RuntimeError, ValueError) as error:  # e.g. an unknown or unavailable --device
        raise CLIError(f"cannot load model {name!r} on {args.device}: {error}") from None


def _score_maps(dataset: _Dataset, evaluator, skip_bad: bool) -> None:
    from tqdm import tqdm

    for pred_path, gt_path in tqdm(dataset.pairs, desc=dataset.name, unit="map", disable=None):
        try:
            pred, gt = _read(pred_path, "L"), _read(gt_path, "L")
            if pred.shape != gt.shape:
                raise ValueError(f"{pred_path.name} is {pred.shape[1]}x{pred.shape[0]} but its mask "
                                 f"{gt_path.name} is {gt.shape[1]}x{gt.shape[0]}")
            evaluator.step(pred, gt)
        except ValueError as error:  # MetricInputError is a ValueError too
            if not skip_bad:
                raise CLIError(f"{error} (use --skip-bad to skip it)") from None
            _warn(f"skipping {error}")


def _score_model(dataset: _Dataset, evaluator, model, args: argparse.Namespace) -> None:
    import torch
    from tqdm import tqdm

    from csnet.infer.protocol import postprocess, preprocess

    def flush(batch: list[tuple[np.ndarray, np.ndarray]]) -> None:
        inputs = torch.cat([preprocess(image) for image, _ in batch]).to(args.device)
        with torch.inference_mode():
            logits = model(inputs)
        for (image, gt), logit in zip(batch, logits):
            evaluator.step(postprocess(logit, image.shape[:2]), gt)

    batch: list[tuple[np.ndarray, np.ndarray]] = []
    for image_path, gt_path in tqdm(dataset.pairs, desc=dataset.name, unit="image", disable=None):
        try:
            image, gt = _read(image_path, "RGB"), _read(gt_path, "L")
            if image.shape[:2] != gt.shape:
                raise ValueError(f"{image_path.name} is {image.shape[1]}x{image.shape[0]} but its mask "
                                 f"{gt_path.name} is {gt.shape[1]}x{gt.shape[0]}")
        except ValueError as error:
            if not args.skip_bad:
                raise CLIError(f"{error} (use --skip-bad to skip it)") from None
            _warn(f"skipping {error}")
            continue
        batch.append((image, gt))
        if len(batch) == args.batch_size:
            flush(batch)
            batch = []
    if batch:
        flush(batch)


def _table(rows: list[dict]) -> str:
    width = max([len("dataset")] + [len(r["dataset"]) for r in rows])
    lines = [f"{'dataset':<{width}}  " + "  ".join(f"{c:>6}" for c in _COLUMNS)]
    for r in rows:
        cells = [f"{r[c]:>6d}" if c == "n" else f"{r[c]:>6.4f}" for c in _COLUMNS]
        lines.append(f"{r['dataset']:<{width}}  " + "  ".join(cells))
    return "\n".join(lines)


def _csv_text(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=("dataset",) + _COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def run(args: argparse.Namespace) -> int:
    from csnet.io.atomic import atomic_write_text
    from csnet.metrics import SODEvaluator

    _check_args(args)
    datasets = _datasets(args)
    model = _load_model(args) if args.data else None

    rows, curves = [], {}
    for dataset in datasets:
        if not dataset.pairs:
            raise CLIError(f"{dataset.name}: no image/mask pairs to score")
        evaluator = SODEvaluator()
        if model is None:
            _score_maps(dataset, evaluator, args.skip_bad)
        else:
            _score_model(dataset, evaluator, model, args)
        if len(evaluator) == 0:
            raise CLIError(f"{dataset.name}: every pair was skipped; nothing to score")
        rows.append({"dataset": dataset.name, **evaluator.get_results()})
        curves[dataset.name] = evaluator.get_curves()

    print(_table(rows))
    if args.csv:
        _write(args.csv, lambda: atomic_write_text(args.csv, _csv_text(rows)))
    if args.json:
        _write(args.json, lambda: atomic_write_text(args.json, json.dumps(rows, indent=2) + "\n"))
    if args.plot:
        from csnet.metrics.plot import plot_curves

        try:
            _write(args.plot, lambda: plot_curves(curves, args.plot))
        except ImportError as error:
            raise CLIError(str(error)) from None
    return 0


def _write(target: str, write: Callable[[], object]) -> None:
    try:
        written = write()
    except OSError as error:
        raise CLIError(f"cannot write {target}: {error.strerror or error}") from None
    paths = written if isinstance(written, list) else [target]
    print("wrote " + ", ".join(str(p) for p in paths))
