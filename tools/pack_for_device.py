"""Pack training pairs small enough to travel to a lent GPU machine with the working tree.

The `device` tool copies the checkout and at most 64 MiB in all to the GPU machine; ``../shared`` stays
behind. This writes a self-contained copy of the chosen pairs into a folder the trainer reads as list
files, re-encoded small (images JPEG, masks PNG, longest side ``--side``, never enlarged) and stopping at a
byte budget, so a session with a GPU can train on the data without anything outside the repo (``.devpack/``
is git-ignored: it travels only when the call carries it):

    python tools/pack_for_device.py /work/runs/split/PASCAL-S-train.txt,/work/shared/data/HumanSeg,\
/work/runs/labels-u2netp/labels.txt -o .devpack --budget-mib 56
    # then one device call runs tools/device_stage.sh with carry [".devpack"]

One list file per source (``<source>.txt``, paths relative to it), a teacher's list keeps its header so the
trainer still treats those maps as soft teacher maps, and ``pack.json`` records what was packed. Sources are
packed in the order given, so the budget cuts the last source short, never the first ones: put the ground
truth first. Within a source the pairs go in a seeded random order, so a source cut short is an even sample
of it (of every photo folder of a teacher's list), not its first folders. The training crop is resized to
224 px, so a 256 px side keeps the detail training sees; held-out images are never packed (pass only
training lists).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from csnet.data.pairs import collect_pairs
from csnet.io.atomic import atomic_write_bytes, atomic_write_text
from csnet.io.images import ImageLoadError, encode_image, load_image, load_mask


def _fit(array: np.ndarray, side: int) -> np.ndarray:
    """``array`` resized so its longest side is at most ``side`` (area filter: no aliasing; never enlarged)."""
    image = Image.fromarray(array)
    scale = side / max(image.size)
    if scale < 1:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BOX)
    return np.asarray(image)


def _pack_name(source: str) -> str:
    """The folder and list name a source gets in the pack: a list file's stem, a folder's name."""
    return Path(source).stem if Path(source).is_file() else Path(source).name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", help="training folders or list files, comma-separated, ground truth first")
    parser.add_argument("-o", "--out", type=Path, required=True, help="pack folder (inside the checkout)")
    parser.add_argument("--side", type=int, default=256, help="longest side of packed images [256]")
    parser.add_argument("--quality", type=int, default=85, help="JPEG quality of packed images [85]")
    parser.add_argument("--budget-mib", type=float, default=56.0, help="stop before the pack passes this [56]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the order within each source [0]")
    args = parser.parse_args(argv)

    sources = [s for s in args.sources.split(",") if s.strip()]
    names = [_pack_name(source) for source in sources]
    for i, name in enumerate(names):
        if name in names[:i]:
            parser.error(f"{sources[i]}: its pack name {name!r} is also that of {sources[names.index(name)]}; "
                         "rename or link one of them")

    budget, used, report = int(args.budget_mib * 2**20), 0, []
    for source, name in zip(sources, names):
        pairs = collect_pairs(source).pairs
        teacher = bool(pairs) and pairs[0].teacher  # the reader marks a teacher's list by its header
        lines, skipped, full = [], 0, False
        for index in random.Random(args.seed).sample(range(len(pairs)), len(pairs)):
            pair = pairs[index]
            try:
                image = encode_image(_fit(load_image(pair.image), args.side), "JPEG",
                                     quality=args.quality, optimize=True)
                mask = encode_image(_fit(load_mask(pair.mask), args.side), "PNG", optimize=True)
            except ImageLoadError as error:  # one bad file never stops the pack
                print(f"skipped: {error}", file=sys.stderr)
                skipped += 1
                continue
            if used + len(image) + len(mask) > budget:
                full = True
                break
            stem = f"{index:05d}-{pair.image.stem}"
            atomic_write_bytes(args.out / name / "images" / f"{stem}.jpg", image)
            atomic_write_bytes(args.out / name / "masks" / f"{stem}.png", mask)
            lines.append(f"{name}/images/{stem}.jpg\t{name}/masks/{stem}.png")
            used += len(image) + len(mask)
        # the source's own header line: it marks the maps as a teacher's and names the teacher
        header = [Path(source).read_text(encoding="utf-8").splitlines()[0]] if teacher else []
        atomic_write_text(args.out / f"{name}.txt", "\n".join(header + sorted(lines)) + "\n")
        report.append({"source": str(source), "list": f"{name}.txt", "teacher": teacher, "pairs": len(pairs),
                       "packed": len(lines), "skipped": skipped})
        print(f"{name}: {len(lines)} of {len(pairs)} pairs packed ({used / 2**20:.1f} MiB so far)")
        if full:
            print(f"budget of {args.budget_mib} MiB reached: later sources not packed", file=sys.stderr)
            break
    atomic_write_text(args.out / "pack.json", json.dumps(
        {"side": args.side, "quality": args.quality, "seed": args.seed, "bytes": used, "sources": report},
        indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
