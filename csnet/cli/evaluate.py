"""``csnet evaluate``: score saliency maps (``--pred DIR --gt DIR``) or a model (``[--model M] --data DIR``).

Scores are the SPEC 4 metrics of :class:`csnet.metrics.SODEvaluator` (max/mean/adaptive F with beta^2 = 0.3,
MAE, S, max/mean/adaptive E, weighted F). With ``--data`` the model predicts through :class:`csnet.Predictor`,
on the runtime ``csnet predict`` would use (``--runtime``; ``.onnx`` models run on ONNX Runtime), and the
uint8 maps it would save are scored, so the figures are those of ``csnet predict`` + ``evaluate --pred``.
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import numpy as np

from csnet.cli.main import CLIError

if TYPE_CHECKING:  # csnet.data imports torch: loaded only when a command runs, not for --help
    from csnet.data.pairs import ImagePair, Pairing

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
                      help="dataset folder(s) with images and masks paired by stem (images/+GT/, "
                           "images/+masks/, Image/+Mask/, Imgs/+GT/, im/+gt/, DUTS-TR-Image/+DUTS-TR-Mask/, "
                           "DUTS-TE-Image/+DUTS-TE-Mask/), or list files of 'image mask' lines; "
                           "the model predicts them")
    from csnet.cli.predict import add_runtime_argument

    model = parser.add_argument_group("model (with --data)")
    model.add_argument("--model", metavar="M", help="a name with bundled weights, a .safetensors file or an .onnx "
                                                   "export (default: the bundled model)")
    model.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N (default cpu)")
    add_runtime_argument(model)
    model.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads for inference")
    model.add_argument("--batch-size", type=int, default=8, metavar="N", help="images per forward (default 8)")
    model.add_argument("--size", type=int, default=None, metavar="S",
                       help="network input side (default: the size the weights were trained at, 224 by the test "
                            "protocol; other sizes score a model trained at that size, and are not benchmark "
                            "figures)")
    out = parser.add_argument_group("output")
    out.add_argument("--csv", metavar="FILE", help="write the scores as CSV, one row per dataset")
    out.add_argument("--json", metavar="FILE", help="write the scores as JSON, a list with one object per dataset")
    out.add_argument("--plot", metavar="DIR", help="write PR and F-threshold curves as PNG (needs csnet[plot])")
    parser.add_argument("--skip-bad", action="store_true",
                        help="warn about and skip unpaired or unreadable files instead of stopping")


@dataclass
class _Dataset:
    name: str
    pairs: Sequence[ImagePair]  # image (or map) and mask, sorted by stem


def _pair_folders(pred_dir: Path, gt_dir: Path, name: str) -> Pairing:
    """Maps of ``pred_dir`` paired by stem with masks of ``gt_dir``, by the rules of :mod:`csnet.data.pairs`."""
    from csnet.data.pairs import MASK_EXTENSIONS, ImagePair, Pairing
    from csnet.data.pairs import _files_by_stem  # the listing rule of dataset folders, so both modes agree

    for folder, what in ((pred_dir, "map"), (gt_dir, "mask")):
        if not folder.is_dir():
            raise CLIError(f"{what} folder not found: {folder}")
    maps, duplicate_maps = _files_by_stem(pred_dir, MASK_EXTENSIONS)
    masks, duplicate_masks = _files_by_stem(gt_dir, MASK_EXTENSIONS)
    return Pairing(
        pairs=tuple(ImagePair(maps[s], masks[s], f"{name}/{s}") for s in sorted(maps.keys() & masks.keys())),
        layouts=(f"{name}: {pred_dir} + {gt_dir}",),
        unpaired_images=tuple(maps[s] for s in sorted(maps.keys() - masks.keys())),
        unpaired_masks=tuple(masks[s] for s in sorted(masks.keys() - maps.keys())),
        duplicates=tuple(duplicate_maps + duplicate_masks))


def _collect(root: Path) -> Pairing:
    """:func:`csnet.data.collect_pairs` for one ``--data`` folder or list file, errors as CLIError.

    Its log warnings about files left out are held back: :func:`_check_pairing` reports those files itself,
    as an error or, with ``--skip-bad``, as warnings.
    """
    from csnet.data import DatasetError, collect_pairs

    def quiet(record: logging.LogRecord) -> bool:
        return False

    pairs_logger = logging.getLogger("csnet.data.pairs")
    pairs_logger.addFilter(quiet)
    try:
        return collect_pairs(os.fspath(root))  # a str: --data values are already split at commas
    except DatasetError as error:
        raise CLIError(str(error)) from None
    finally:
        pairs_logger.removeFilter(quiet)


def _check_pairing(pairing: Pairing, what: str, skip_bad: bool) -> None:
    """Unpaired, duplicate and missing files are errors, or skipped with a warning under ``--skip-bad``."""
    problems = []
    if pairing.unpaired_images:
        found = pairing.unpaired_images
        problems.append(f"{len(found)} {what} file(s) in {found[0].parent} without a mask "
                        f"({_names(p.name for p in found)})")
    if pairing.unpaired_masks:
        found = pairing.unpaired_masks
        problems.append(f"{len(found)} mask file(s) in {found[0].parent} without a {what} "
                        f"({_names(p.name for p in found)})")
    if pairing.duplicates:
        problems.append(f"{len(pairing.duplicates)} file(s) with the stem of a file before them in the same "
                        f"folder, which is the one used ({_names(str(p) for p in pairing.duplicates)})")
    if pairing.missing:
        problems.append(f"{len(pairing.missing)} file(s) named by a list file not found "
                        f"({_names(str(p) for p, _ in pairing.missing)})")
    _report(problems, skip_bad)


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


def _dataset_name(gt_dir: Path) -> str:
    gt_dir = gt_dir.resolve()
    if gt_dir.name.lower() in _GENERIC_NAMES and gt_dir.parent.name:
        return gt_dir.parent.name
    return gt_dir.name


def _source_name(root: Path) -> str:
    """A dataset's name: its folder's, or for a list file the name of the folder holding it (as in pair keys)."""
    root = root.resolve()
    return root.parent.name if root.is_file() else root.name


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return out


def _datasets(args: argparse.Namespace) -> list[_Dataset]:
    if args.pred:
        name = args.name or _dataset_name(Path(args.gt))
        pairing = _pair_folders(Path(args.pred), Path(args.gt), name)
        _check_pairing(pairing, "map", args.skip_bad)
        return [_Dataset(name, pairing.pairs)]
    roots = [Path(d) for spec in args.data for d in spec.split(",") if d]
    if not roots:
        raise CLIError("--data needs at least one folder")
    datasets = []
    for root, name in zip(roots, _unique([_source_name(root) for root in roots])):
        pairing = _collect(root)
        _check_pairing(pairing, "image", args.skip_bad)
        datasets.append(_Dataset(name, pairing.pairs))
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
    if args.size is not None and args.size < 16:
        raise CLIError(f"--size must be at least 16, got {args.size}")
    if args.plot and importlib.util.find_spec("matplotlib") is None:  # fail before a long evaluation
        raise CLIError("--plot needs matplotlib: pip install 'csnet[plot]'")


def _load_predictor(args: argparse.Namespace):
    from csnet.cli.predict import make_predictor

    return make_predictor(args)


def _score_maps(dataset: _Dataset, evaluator, skip_bad: bool) -> None:
    from tqdm import tqdm

    from csnet.io.images import ImageLoadError, load_mask

    for pair in tqdm(dataset.pairs, desc=dataset.name, unit="map", disable=None):
        try:
            pred, gt = load_mask(pair.image), load_mask(pair.mask)
            if pred.shape != gt.shape:
                raise ValueError(f"{pair.image.name} is {pred.shape[1]}x{pred.shape[0]} but its mask "
                                 f"{pair.mask.name} is {gt.shape[1]}x{gt.shape[0]}")
            evaluator.step(pred, gt)
        except (ImageLoadError, ValueError) as error:  # MetricInputError is a ValueError too
            if not skip_bad:
                raise CLIError(f"{error} (use --skip-bad to skip it)") from None
            _warn(f"skipping {error}")


def _score_model(dataset: _Dataset, evaluator, predictor, args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from csnet.io.images import ImageLoadError, load_image, load_mask

    def flush(batch: list[tuple[np.ndarray, np.ndarray]]) -> None:
        logits = predictor.infer(np.stack([predictor.preprocess(image) for image, _ in batch]))
        for (image, gt), logit in zip(batch, logits):
            evaluator.step(predictor.postprocess(logit, *image.shape[:2]), gt)

    batch: list[tuple[np.ndarray, np.ndarray]] = []
    for pair in tqdm(dataset.pairs, desc=dataset.name, unit="image", disable=None):
        try:
            image, gt = load_image(pair.image), load_mask(pair.mask)
            if image.shape[:2] != gt.shape:
                raise ValueError(f"{pair.image.name} is {image.shape[1]}x{image.shape[0]} but its mask "
                                 f"{pair.mask.name} is {gt.shape[1]}x{gt.shape[0]}")
        except (ImageLoadError, ValueError) as error:
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
    model = _load_predictor(args) if args.data else None

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
