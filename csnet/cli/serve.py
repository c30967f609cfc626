"""``csnet serve``: the HTTP service (FastAPI + uvicorn, the ``serve`` extra) on 127.0.0.1:8000 by default.

``POST /v1/saliency`` (multipart ``image``) -> PNG mask; ``?output=cutout`` RGBA PNG; ``?output=json``
bounding box and area. ``GET /`` is a page to try it, ``GET /healthz`` and ``GET /v1/models`` report.
"""
from __future__ import annotations

import argparse
import sys

from csnet.cli.main import CLIError
from csnet.cli.predict import add_model_arguments, make_predictor


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 exposes it to the network)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    add_model_arguments(parser, batch=False)
    limits = parser.add_argument_group("limits and batching")
    limits.add_argument("--max-upload-mb", type=float, default=20.0, metavar="MB",
                        help="largest upload accepted, in MiB (default 20); larger -> 413")
    limits.add_argument("--max-megapixels", type=float, default=40.0, metavar="MP",
                        help="largest image accepted, in megapixels (default 40); larger -> 413")
    limits.add_argument("--max-batch", type=int, default=8, metavar="N",
                        help="most concurrent requests sharing one forward pass (default 8)")
    limits.add_argument("--max-wait-ms", type=float, default=5.0, metavar="MS",
                        help="how long a request waits for others to batch with (default 5)")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                        help="uvicorn's log level (default info)")


def build_app(args: argparse.Namespace):
    """The app for these options (separate from :func:`run` so tests need no socket)."""
    try:
        from csnet.serve.app import create_app
    except ImportError as error:
        raise CLIError(f"{error}") from None
    if args.max_upload_mb <= 0 or args.max_megapixels <= 0 or args.max_batch < 1 or args.max_wait_ms < 0:
        raise CLIError("--max-upload-mb, --max-megapixels, --max-batch must be positive and --max-wait-ms >= 0")
    predictor = make_predictor(args)
    try:
        return create_app(predictor, max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
                          max_pixels=int(args.max_megapixels * 1e6), max_batch=args.max_batch,
                          max_wait_ms=args.max_wait_ms)
    except ImportError as error:
        raise CLIError(str(error)) from None


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError:
        raise CLIError("the service needs uvicorn: pip install 'csnet[serve]'") from None
    if not 0 <= args.port <= 65535:
        raise CLIError(f"--port must be in 0..65535, got {args.port}")
    app = build_app(args)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"csnet serve: note: listening on {args.host}, reachable from other machines", file=sys.stderr)
    print(f"csnet serve: {app.state.predictor!r} at http://{args.host}:{args.port}/", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0
