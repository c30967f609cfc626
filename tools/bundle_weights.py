"""Copy a trained model file into the package as bundled weights under a registry name.

Writes ``csnet/weights/<name>.safetensors`` (config renamed to ``name``, provenance in its metadata) and
``csnet/models/configs/<name>.json``, and prints the sha256 for ``csnet/models/weights.py``:

    python tools/bundle_weights.py runs/ship-ft/best.safetensors --name csnet_pascal --note "..."
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
from pathlib import Path

from csnet.io.atomic import atomic_write_text
from csnet.models import CSNet, load_model, read_metadata, save_model

PACKAGE = Path(__file__).resolve().parents[1] / "csnet"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--name", required=True)
    parser.add_argument("--note", default="", help="provenance stored in the file's metadata")
    args = parser.parse_args()
    trained = load_model(args.model)
    config = dataclasses.replace(trained.config, name=args.name)
    model = CSNet(config)
    model.load_state_dict(trained.state_dict())
    source = read_metadata(args.model)
    meta = {k: v for k, v in source.items() if k not in ("format", "format_version", "config")}
    meta["provenance"] = args.note
    out = save_model(model, PACKAGE / "weights" / f"{args.name}.safetensors", metadata=meta)
    atomic_write_text(PACKAGE / "models" / "configs" / f"{args.name}.json", config.to_json(indent=1) + "\n")
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    print(f"{out} ({out.stat().st_size:,} bytes, {sum(p.numel() for p in model.parameters()):,} params)")
    print(f"sha256 {digest}")


if __name__ == "__main__":
    main()
