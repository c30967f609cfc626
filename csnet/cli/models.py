"""``csnet models``: list the registered models and which have bundled weights."""
from __future__ import annotations

import argparse
import json


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", default="", help="shell-style filter, e.g. 'csnet_l*'")
    parser.add_argument("--json", action="store_true", help="print a JSON list")


def run(args: argparse.Namespace) -> int:
    from csnet.models import create_model, list_models
    from csnet.models.weights import PRETRAINED

    rows = []
    for name in list_models(args.pattern):
        model = create_model(name)
        rows.append({"name": name, "params": sum(p.numel() for p in model.parameters()),
                     "pretrained": name in PRETRAINED, "doc": (model_doc(name) or "")})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max((len(r["name"]) for r in rows), default=4)
    print(f"{'model':<{width}}  {'params':>9}  weights  description")
    for r in rows:
        print(f"{r['name']:<{width}}  {r['params']:>9,}  {'bundled' if r['pretrained'] else '-':<7}  {r['doc']}")
    return 0


def model_doc(name: str) -> str:
    from csnet.models.registry import model_entrypoint

    doc = model_entrypoint(name).__doc__ or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""
