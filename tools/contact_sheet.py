"""A contact sheet (image | mask | cutout) of held-out images, for people to judge a model by eye.

    python tools/contact_sheet.py --model csnet_pascal --list runs/split/PASCAL-S-val.txt -n 12 \
        -o docs/held-out-csnet_pascal.png

The images are the first ``-n`` of the list file in a fixed shuffle (seed 0), so every model is shown on
the same photos; only held-out images should be listed, never training ones.
"""
from __future__ import annotations

import argparse
import random

from csnet.data.pairs import read_list_file
from csnet.infer.demo import contact_sheet
from csnet.infer.predictor import Predictor
from csnet.io.images import load_image, save_png


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="csnet_pascal", help="registered name or .safetensors file")
    parser.add_argument("--list", required=True, help="list file of held-out 'image mask' lines")
    parser.add_argument("-n", type=int, default=12, help="images on the sheet (default 12)")
    parser.add_argument("--row-height", type=int, default=160)
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args()
    entries = read_list_file(args.list)
    random.Random(0).shuffle(entries)
    samples = [(image.stem, load_image(image)) for image, _ in entries[:args.n]]
    predictor = Predictor(args.model)
    sheet = contact_sheet(predictor, samples, row_height=args.row_height,
                          caption=f"model {predictor.name} - held-out images ({args.list.rsplit('/', 1)[-1]})")
    save_png(args.output, sheet)
    print(f"wrote {args.output} ({sheet.shape[1]}x{sheet.shape[0]}, {len(samples)} images)")


if __name__ == "__main__":
    main()
