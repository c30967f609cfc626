"""``csnet info MODEL``: parameters, MACs and per-stage output shapes."""
from __future__ import annotations

import argparse
import json

from csnet.cli.main import CLIError


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", default=None,
                        help="registered model name or a .safetensors model file (default: the bundled model)")
    parser.add_argument("--size", nargs=2, type=int, default=(224, 224), metavar=("H", "W"),
                        help="input size (default 224 224)")
    parser.add_argument("--json", action="store_true", help="print JSON (keys include params, macs)")


def resolve_model(spec: str):
    """A model from a file path, a name with bundled weights, or a registered name (random weights)."""
    from pathlib import Path

    from csnet.models import ModelFileError, create_model, is_model, load_model
    from csnet.models.weights import PRETRAINED

    if Path(spec).is_file() or spec in PRETRAINED:
        try:
            return load_model(spec)
        except ModelFileError as error:
            raise CLIError(str(error)) from None
    if is_model(spec):
        return create_model(spec).eval()
    if spec.endswith(".safetensors"):
        raise CLIError(f"{spec}: no such file")
    raise CLIError(f"{spec}: not a model file or a registered model (see `csnet models`)")


def run(args: argparse.Namespace) -> int:
    from csnet.models.summary import summarize

    height, width = args.size
    if height < 1 or width < 1:
        raise CLIError(f"--size must be positive, got {height} {width}")
    if args.model is None:
        from csnet.models import DEFAULT_MODEL

        args.model = DEFAULT_MODEL
    model = resolve_model(args.model)
    summary = summarize(model, (height, width), name=args.model)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
        return 0
    print(f"model      {summary.name}")
    print(f"params     {summary.params:,}")
    print(f"MACs       {summary.macs / 1e9:.3f} G at {height}x{width} (FLOPs = 2 x MACs = {2 * summary.macs / 1e9:.3f} G)")
    print(f"output     {' x '.join(map(str, summary.output_shape))} (logits)")
    print("stages     (per-scale output shapes, B x C x H x W; padded to a multiple of "
          f"{model.config.pad_multiple})")
    for stage in summary.stages:
        shapes = ", ".join("-" if s is None else "x".join(map(str, s[1:])) for s in stage["scales"])
        print(f"  stage{stage['stage']}  {stage['blocks']} blocks  {shapes}")
    _print_weights(args.model)
    return 0


def _print_weights(name: str) -> None:
    """The model card of bundled weights: licence, data, held-out figures and how they were made."""
    from csnet.models.weights import PRETRAINED

    info = PRETRAINED.get(name)
    if info is None:
        return
    print(f"weights    bundled ({info.file}); licence {info.license}")
    print(f"data       {info.training_data}")
    if info.metrics:
        print("held out   " + ", ".join(f"{k} {v:.4f}" for k, v in info.metrics.items()))
    if info.recipe:
        print(f"recipe     {info.recipe}")
    if info.lineage:
        print("lineage")
        for step in info.lineage:
            print(f"  {step}")
