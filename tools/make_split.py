"""Write a deterministic train/validation split of a dataset as two list files (``image mask`` per line).

The shipped weights were trained on PASCAL-S minus a held-out validation share plus HumanSeg; HumanSeg is
training-only (its masks are machine-made), so the split is made on PASCAL-S alone:

    python tools/make_split.py ../shared/data/PASCAL-S --val-fraction 0.15 --seed 0 -o runs/split
"""
from __future__ import annotations

import argparse
from pathlib import Path

from csnet.data import pair_dataset, split_pairs
from csnet.io.atomic import atomic_write_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--val-fraction", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--out", type=Path, required=True)
    args = parser.parse_args()
    pairs = pair_dataset(args.dataset)
    train, val = split_pairs(pairs, args.val_fraction, seed=args.seed)
    name = args.dataset.resolve().name
    for part, chosen in (("train", train), ("val", val)):
        lines = "".join(f"{p.image.resolve()} {p.mask.resolve()}\n" for p in chosen)
        atomic_write_text(args.out / f"{name}-{part}.txt", lines)
        print(f"{args.out / f'{name}-{part}.txt'}: {len(chosen)} pairs")


if __name__ == "__main__":
    main()
