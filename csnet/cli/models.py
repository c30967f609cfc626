"""``csnet models``: list the registered models and which have bundled weights."""
from __future__ import annotations

import argparse
import json


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", default="", help="shell-style filter, e.g. 'csnet_l*'")
    parser.add_argument("--json", action="store_true", help="print a JSON list")


def run(args: argparse.Namespace) -> int:
    from csnet.models import DEFAULT_MODEL, create_model, list_models
    from csnet.models.weights import PRETRAINED

    rows = []
    for name in list_models(args.pattern):
        model = create_model(name)
        rows.append({"name": name, "params": sum(p.numel() for p in model.parameters()),
                     "pretrained": name in PRETRAINED, "weights": _weights_words(name, DEFAULT_MODEL, PRETRAINED),
                     "doc": (model_doc(name) or "")})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max((len(r["name"]) for r in rows), default=4)
    words = max((len(r["weights"]) for r in rows), default=7)
    print(f"{'model':<{width}}  {'params':>9}  {'weights':<{words}}  description")
    for r in rows:
        print(f"{r['name']:<{width}}  {r['params']:>9,}  {r['weights']:<{words}}  {r['doc']}")
    if rows and not any(r["pretrained"] for r in rows):
        print("none of these has trained weights: csnet predict needs a model file (csnet train, csnet import-official)")
    return 0


def _weights_words(name: str, default: str, pretrained) -> str:
    """Whether ``name`` can predict out of the box, in plain words."""
    if name not in pretrained:
        return "none (architecture only: train it or load a file)"
    return "trained, bundled (the default model)" if name == default else "trained, bundled"


def model_doc(name: str) -> str:
    from csnet.models.registry import model_entrypoint

    doc = model_entrypoint(name).__doc__ or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""
