"""``csnet import-official CKPT.pth.tar CONFIG.bin -o OUT.safetensors``: convert a released checkpoint."""
from __future__ import annotations

import argparse
from pathlib import Path

from csnet.cli.main import CLIError


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="released checkpoint (.pth.tar)")
    parser.add_argument("config", type=Path, help="its channel config (.bin)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output .safetensors model file")


def run(args: argparse.Namespace) -> int:
    from csnet.io.safe_pickle import UnsafePickleError
    from csnet.models import save_model
    from csnet.models.official import OfficialImportError, import_official

    for path in (args.checkpoint, args.config):
        if not path.is_file():
            raise CLIError(f"{path}: no such file")
    try:
        model = import_official(args.checkpoint, args.config)
    except (OfficialImportError, UnsafePickleError) as error:
        raise CLIError(str(error)) from None
    params = sum(p.numel() for p in model.parameters())
    save_model(model, args.output, metadata={
        "source": f"imported from {args.checkpoint.name} + {args.config.name} (authors' release)",
        "license": "CC BY-NC-SA 4.0 (authors' release; non-commercial)",
    })
    print(f"wrote {args.output} ({params:,} parameters, release x100 weight scaling folded in)")
    return 0
