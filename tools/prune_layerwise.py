"""Layer-wise fixed-ratio pruning of ILBlock channels, for runs too short for DWD to separate channels.

DWD needs a long schedule to drive weak channels' BN gammas to ~0; in a short CPU run every |gamma| shrinks
at Adam's normalized rate and they stay within a few percent of each other, so ``csnet prune --threshold``
removes nothing and a global ``--ratio`` can empty a whole layer. This tool zeroes, in every ILBlock and at
every scale, the ``ratio`` fraction of channels with the smallest |gamma| of the block's first CBR, then lets
``csnet.channels.prune`` remove them exactly (their constant outputs are folded into the consumers).

    python tools/prune_layerwise.py runs/x2-dwd/last.safetensors --ratio 0.5 -o runs/pruned.safetensors
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from csnet.channels.prune import prune_model
from csnet.models import load_model, save_model
from csnet.models.csnet import ILBlock


def zero_weakest(model: torch.nn.Module, ratio: float) -> int:
    """Set the smallest-|gamma| ``ratio`` share of each ILBlock's first-CBR BN channels to 0; returns how many."""
    removed = 0
    with torch.no_grad():
        for module in model.modules():
            if not isinstance(module, ILBlock):
                continue
            for bn in module.conv1.norm_act.bns.values():
                n_remove = int(math.floor(ratio * bn.num_features))
                n_remove = min(n_remove, bn.num_features - 1)  # never empty a scale
                if n_remove <= 0:
                    continue
                weakest = bn.weight.abs().argsort()[:n_remove]
                bn.weight[weakest] = 0.0
                removed += n_remove
    return removed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--ratio", type=float, required=True)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    model = load_model(args.model)
    zeroed = zero_weakest(model, args.ratio)
    pruned, report = prune_model(model, threshold=1e-20, block_rule="first")
    save_model(pruned, args.output, metadata={"pruned_from": args.model.name,
                                              "pruning": f"layer-wise ratio {args.ratio} of ILBlock channels"})
    print(f"zeroed {zeroed} ILBlock channels")
    print(report.format())


if __name__ == "__main__":
    main()
