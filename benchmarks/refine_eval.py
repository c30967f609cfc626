"""Does edge refinement help? MAE, max F (and S) with and without each ``--refine`` mode, and ms per image.

Every image of a list file (``image mask`` lines, e.g. ``tools/make_split.py``'s held-out split) is predicted
once through the test protocol (uint8 maps at the image's size, as ``csnet evaluate --data`` scores them);
each mode then refines that same map, so the figures differ only by the refinement. Milliseconds are the
refinement alone (wall clock, median and mean over the images), not the network.

    python tools/make_split.py ../shared/data/PASCAL-S --val-fraction 0.15 --seed 0 -o /tmp/split
    nice -n 15 python benchmarks/refine_eval.py /tmp/split/PASCAL-S-val.txt [--model FILE] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("list", help="list file of 'image mask' lines")
    parser.add_argument("--model", default=None, help="model name or file (default: the bundled model)")
    parser.add_argument("--modes", default="none,guided,matting", help="comma-separated (default all)")
    parser.add_argument("--limit", type=int, default=None, help="first N images only (smoke runs)")
    parser.add_argument("--json", default=None, help="also write the results as JSON")
    args = parser.parse_args(argv)

    from csnet.data.pairs import read_list_file
    from csnet.infer.predictor import Predictor
    from csnet.infer.refine import refine_mask
    from csnet.io.images import load_image, load_mask
    from csnet.metrics import SODEvaluator

    pairs = read_list_file(args.list)[: args.limit]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    predictor = Predictor(args.model, device="cpu", backend="torch")
    evaluators = {mode: SODEvaluator() for mode in modes}
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    for index, (image_path, mask_path) in enumerate(pairs):
        image, gt = load_image(image_path), load_mask(mask_path)
        mask = predictor.predict(image)
        for mode in modes:
            start = time.perf_counter()
            refined = refine_mask(image, mask, None if mode == "none" else mode)
            times[mode].append(time.perf_counter() - start)
            evaluators[mode].step(refined, gt)
        if (index + 1) % 16 == 0:
            print(f"{index + 1}/{len(pairs)}", file=sys.stderr, flush=True)

    rows = []
    for mode in modes:
        scores = evaluators[mode].get_results()
        ms = [1000 * t for t in times[mode]]
        rows.append({"mode": mode, "n": scores["n"], "MAE": scores["MAE"], "maxF": scores["maxF"],
                     "S": scores["S"], "ms_median": statistics.median(ms), "ms_mean": statistics.fmean(ms)})
    print(f"model {predictor.name}, {len(pairs)} images of {args.list}")
    print("| mode | n | MAE | max F | S | ms/image median (mean) |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['mode']} | {row['n']} | {row['MAE']:.4f} | {row['maxF']:.4f} | {row['S']:.4f} | "
              f"{row['ms_median']:.1f} ({row['ms_mean']:.1f}) |")
    if args.json:
        from csnet.io.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps({"model": predictor.name, "list": args.list, "rows": rows},
                                                indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
