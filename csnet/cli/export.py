"""``csnet export MODEL -o model.onnx``: the fused network as ONNX (dynamic batch, height, width), checked and verified.

MODEL is a ``.safetensors`` file, a name with bundled weights, or a registered name (random weights,
for benchmarking). The graph is the fused network the ``onnxruntime`` runtime runs
(:mod:`csnet.infer.onnx_export`), so ``csnet predict --model model.onnx`` is as fast as ``--runtime
onnxruntime``. The file passes ``onnx.checker``; ``--verify`` (default) also runs it through the
``onnxruntime`` runtime at two sizes and compares with the eager PyTorch model.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from csnet.cli.main import CLIError


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a .safetensors model file, a name with bundled weights, or a registered name")
    parser.add_argument("-o", "--output", required=True, metavar="ONNX", help="the .onnx file to write")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip the ONNX Runtime vs PyTorch comparison")


def verify(model, path: str, sizes=((1, 224, 224), (2, 225, 301))) -> tuple[float, float]:
    """``(max |ONNX Runtime - eager PyTorch|, max |PyTorch logit|)`` over random inputs of ``sizes``
    (batch, height, width)."""
    import numpy as np
    import torch

    from csnet.infer.runtimes import create_runtime

    runtime = create_runtime("onnxruntime", path)
    generator = torch.Generator().manual_seed(0)
    worst = scale = 0.0
    for batch, height, width in sizes:
        x = torch.randn(batch, 3, height, width, generator=generator)
        with torch.inference_mode():
            expected = model(x).numpy()
        worst = max(worst, float(np.abs(runtime(x.numpy()) - expected).max()))
        scale = max(scale, float(np.abs(expected).max()))
    return worst, scale


def run(args: argparse.Namespace) -> int:
    from csnet.cli.info import resolve_model
    from csnet.infer.onnx_export import DEFAULT_OPSET, export_onnx
    from csnet.infer.runtimes import RuntimeUnavailable
    from csnet.models import is_model
    from csnet.models.weights import PRETRAINED

    if not args.output.lower().endswith(".onnx"):
        raise CLIError(f"-o should name an .onnx file, got {args.output}")
    model = resolve_model(args.model)
    if is_model(args.model) and args.model not in PRETRAINED and not Path(args.model).is_file():
        print(f"csnet export: note: {args.model} has no bundled weights; exporting random weights",
              file=sys.stderr)
    try:
        path = export_onnx(model, args.output, opset=args.opset or DEFAULT_OPSET)
    except ImportError as error:
        raise CLIError(str(error)) from None
    except OSError as error:
        raise CLIError(f"cannot write {args.output}: {error.strerror or error}") from None
    size_kb = path.stat().st_size / 1024
    line = (f"wrote {path} ({size_kb:.0f} KB, fused graph, opset {args.opset or DEFAULT_OPSET}, dynamic "
            "batch/height/width, onnx.checker ok")
    if args.verify:
        try:
            difference, scale = verify(model, str(path))
        except (ImportError, RuntimeUnavailable) as error:
            raise CLIError(f"{error} (or pass --no-verify)") from None
        if difference > 1e-4 * max(1.0, scale):  # float32 rounding grows with the logits' magnitude
            raise CLIError(f"{path}: ONNX Runtime differs from PyTorch by {difference:.2e} "
                           f"(> 1e-4 x max(1, max |logit| = {scale:.1f}))")
        line += f", max |ORT - torch| {difference:.1e}"
    print(line + ")")
    return 0
