"""Entry point of the ``csnet`` command.

Every command lives in its own module with two functions: ``add_parser(subparsers)`` declares its
arguments and ``run(args) -> int`` does the work and returns the exit code. Modules are imported
lazily so that ``csnet --version`` and ``csnet --help`` answer before torch is imported.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Sequence

from csnet import __version__

# (command name, module under csnet.cli, one-line help). Order is the order shown in --help.
COMMANDS: list[tuple[str, str, str]] = [
    ("predict", "predict", "saliency masks and cutouts for images, folders and videos"),
    ("demo", "demo", "run the bundled model on bundled sample photos and write a contact sheet"),
    ("models", "models", "list the registered models"),
    ("info", "info", "parameters, MACs and per-stage shapes of a model"),
    ("label", "label", "write a teacher model's soft maps for photos without masks (distillation)"),
    ("train", "train", "train a model on SOD datasets"),
    ("evaluate", "evaluate", "score saliency maps (or a model) against ground truth"),
    ("prune", "prune", "remove the channels dynamic weight decay killed"),
    ("export", "export", "export a model to ONNX"),
    ("serve", "serve", "HTTP service for saliency masks"),
    ("benchmark", "benchmark", "measure inference speed"),
    ("import-official", "import_official", "convert the authors' released checkpoints to .safetensors"),
]


class CLIError(Exception):
    """An error the user can fix; printed as one line without a traceback."""


def _available_commands() -> list[tuple[str, str, str]]:
    return [c for c in COMMANDS if importlib.util.find_spec(f"csnet.cli.{c[1]}") is not None]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="csnet", description="CSNet salient object detection.")
    parser.add_argument("--version", action="version", version=f"csnet {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name, help_text in _available_commands():
        module = importlib.import_module(f"csnet.cli.{module_name}")
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        module.add_parser(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--version":  # answer before importing torch
        print(f"csnet {__version__}")
        return 0
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("PIL").setLevel(logging.INFO)  # -v is about csnet; PIL's per-chunk DEBUG lines drown it
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except CLIError as error:
        print(f"csnet {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `csnet info --json | head`: the reader left; no traceback, and none at exit either
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    # `python -m csnet.cli.main` (the form torchrun launches) runs this file as `__main__`, a second copy of
    # the module beside the `csnet.cli.main` that the commands import: their CLIError is that module's, which
    # this copy's `except CLIError` would not catch (a traceback instead of the one-line error). Run that one.
    import importlib

    sys.exit(importlib.import_module("csnet.cli.main").main())
