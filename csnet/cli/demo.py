"""``csnet demo``: the bundled model on the sample photos that ship with scikit-image -> a contact sheet PNG.

Downloads nothing: the photos and the model (``csnet.models.DEFAULT_MODEL``) both ship inside installed
packages. ``--model FILE`` shows another model on the same photos.
"""
from __future__ import annotations

import argparse
import logging

from csnet.cli.main import CLIError
from csnet.cli.predict import add_model_arguments, make_predictor

log = logging.getLogger(__name__)


def add_parser(parser: argparse.ArgumentParser) -> None:
    from csnet.infer.demo import DEFAULT_SAMPLES, SAMPLES

    parser.add_argument("-o", "--output", default="csnet-demo.png", metavar="PNG",
                        help="contact sheet to write (default csnet-demo.png)")
    parser.add_argument("--images", default=",".join(DEFAULT_SAMPLES), metavar="NAMES",
                        help=f"comma-separated samples from: {', '.join(SAMPLES)} (default: %(default)s)")
    parser.add_argument("--row-height", type=int, default=220, metavar="PX", help="thumbnail height (default 220)")
    add_model_arguments(parser, batch=False)


def run(args: argparse.Namespace) -> int:
    from csnet.infer.demo import contact_sheet, sample_images
    from csnet.io.images import save_png

    if args.row_height < 16:
        raise CLIError(f"--row-height must be at least 16, got {args.row_height}")
    names = [n.strip() for n in args.images.split(",") if n.strip()]
    try:
        samples = sample_images(names)
    except (ImportError, KeyError, FileNotFoundError) as error:
        raise CLIError(str(error).strip("'\"")) from None
    predictor = make_predictor(args)
    sheet = contact_sheet(predictor, samples, row_height=args.row_height)
    try:
        save_png(args.output, sheet)
    except OSError as error:
        raise CLIError(f"cannot write {args.output}: {error.strerror or error}") from None
    print(f"wrote {args.output} ({sheet.shape[1]}x{sheet.shape[0]}, {len(samples)} images, model {predictor.name})")
    return 0
