"""``csnet prune MODEL.safetensors -o SMALL.safetensors``: remove the channels dynamic weight decay killed.

``--threshold T`` (default 1e-20, the release's) removes channels with BN ``|gamma| < T``; ``--ratio R`` instead
removes the fraction R of channels with the smallest ``|gamma|`` network-wide (supplementary Table 4's
comparison). Dead channels' constant outputs are folded into their consumers (see
:mod:`csnet.channels.prune`), so the pruned model predicts the same maps except near the image border.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from csnet.cli.main import CLIError


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _ratio(text: str) -> float:
    value = _positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help=".safetensors model file (or a model name with bundled weights)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="pruned .safetensors model file")
    rule = parser.add_mutually_exclusive_group()
    rule.add_argument("--threshold", type=_positive_float, metavar="T",
                      help="remove channels with BN |gamma| < T (default 1e-20)")
    rule.add_argument("--ratio", type=_ratio, metavar="R",
                      help="remove the fraction R of channels with the smallest |gamma| (fixed-ratio rule)")
    parser.add_argument("--block-rule", choices=("first_or_last", "first", "any"), default="first_or_last",
                        help="which BNs of a block decide its channels: its first or last CBR (default; exact), "
                             "its first CBR only (the release's rule), or any of the three (also channels dead "
                             "at the middle depthwise CBR, which change the output near the image border)")
    parser.add_argument("--min-channels", type=int, default=0, metavar="N",
                        help="keep at least N channels (the highest |gamma|) in a layer the rule would empty, "
                             "instead of stopping with an error (default 0: stop)")
    parser.add_argument("--report", type=Path, metavar="FILE.json", help="also write the report as JSON")
    parser.add_argument("--plot", type=Path, metavar="FILE.png",
                        help="write a log-scale histogram of |gamma| before pruning (needs csnet[plot])")
    parser.add_argument("--size", nargs=2, type=int, default=(224, 224), metavar=("H", "W"),
                        help="input size at which MACs are counted (default 224 224)")


def _load(spec: str):
    from csnet.models import ModelFileError, load_model
    from csnet.models.hub import read_metadata
    from csnet.models.weights import PRETRAINED

    from csnet.models import is_model

    path = Path(spec)
    if not path.is_file() and spec not in PRETRAINED:
        if is_model(spec):
            raise CLIError(f"{spec}: a registered model that has no weights; names with weights: "
                           f"{', '.join(sorted(PRETRAINED)) or 'none'}, or give a .safetensors file")
        raise CLIError(f"{spec}: no such file")
    try:
        model = load_model(spec)
        metadata = read_metadata(path) if path.is_file() else {}
    except ModelFileError as error:
        raise CLIError(str(error)) from None
    return model, metadata


def run(args: argparse.Namespace) -> int:
    from csnet.channels.prune import DEFAULT_THRESHOLD, PruneError, bn_gammas, prune_model
    from csnet.io.atomic import atomic_write_text
    from csnet.models import save_model

    height, width = args.size
    if height < 1 or width < 1:
        raise CLIError(f"--size must be positive, got {height} {width}")
    model, metadata = _load(args.model)
    threshold = args.threshold if args.ratio is None and args.threshold is not None else None
    if args.ratio is None and threshold is None:
        threshold = DEFAULT_THRESHOLD

    if args.plot is not None:
        from csnet.channels.gamma_plot import plot_gamma_histogram

        try:
            plot_gamma_histogram(bn_gammas(model), args.plot, threshold=threshold,
                                 title=f"|gamma| of {Path(args.model).name} before pruning")
        except ImportError as error:
            raise CLIError(str(error)) from None
        except OSError as error:
            raise CLIError(f"{args.plot}: cannot write ({error.strerror or error})") from None

    try:
        pruned, report = prune_model(model, threshold=threshold, ratio=args.ratio, block_rule=args.block_rule,
                                     input_size=(height, width), min_channels=args.min_channels)
    except (PruneError, ValueError) as error:
        raise CLIError(str(error)) from None

    # keep provenance and licence of the source file; record how it was pruned
    kept = {k: v for k, v in metadata.items() if k not in ("format", "format_version", "config")}
    kept["pruned_from"] = Path(args.model).name
    kept["pruning"] = json.dumps({"mode": report.mode, "threshold": report.threshold, "ratio": report.ratio,
                                  "block_rule": report.block_rule, "min_channels": args.min_channels})
    try:
        save_model(pruned, args.output, metadata=kept)
        if args.report is not None:
            atomic_write_text(args.report, json.dumps(report.to_dict(), indent=2) + "\n")
    except OSError as error:
        raise CLIError(f"cannot write output ({error.strerror or error}: {error.filename or args.output})") from None

    print(report.format())
    if report.channels_removed == 0:
        smallest = "-" if report.smallest_kept_gamma is None else f"{report.smallest_kept_gamma:.3g}"
        why = (f"no channel has |gamma| below {report.threshold:.3g} (the smallest is {smallest})"
               if report.ratio is None else f"--ratio {report.ratio:g} rounds to no channel")
        print(f"nothing removed: {why}; the model was trained without dynamic weight decay, or try --ratio R")
    print(f"wrote {args.output}" + (f", {args.report}" if args.report else "") +
          (f", {args.plot}" if args.plot else ""))
    return 0
