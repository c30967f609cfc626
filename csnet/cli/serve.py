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
    limits.add_argument("--max-connections", type=int, default=64, metavar="N",
                        help="most open connections; more get 503 (default 64; each upload being read holds one "
                             "and up to --max-upload-mb of memory)")
    limits.add_argument("--body-timeout", type=float, default=30.0, metavar="S",
                        help="an upload not received within S seconds gets 408 (default 30)")
    access = parser.add_argument_group("who may call it")
    access.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                        help="let web pages from ORIGIN (scheme://host[:port]) call the service; repeatable. "
                             "By default only the service's own page may")
    access.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                        help="answer requests whose Host is NAME (e.g. behind a reverse proxy); by default "
                             "only localhost, 127.0.0.1, ::1 and --host, against DNS rebinding")
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
    if args.max_connections < 1 or not args.body_timeout > 0:
        raise CLIError("--max-connections and --body-timeout must be positive")
    for origin in args.allow_origin:
        if not origin.startswith(("http://", "https://")) or origin.count("/") != 2:
            raise CLIError(f"--allow-origin {origin}: expected scheme://host[:port], e.g. http://localhost:3000")
    predictor = make_predictor(args)
    try:
        return create_app(predictor, max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
                          max_pixels=int(args.max_megapixels * 1e6), max_batch=args.max_batch,
                          max_wait_ms=args.max_wait_ms, body_timeout_s=args.body_timeout, host=args.host,
                          allow_origins=args.allow_origin, allow_hosts=args.allow_host)
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
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level,
                limit_concurrency=args.max_connections)
    return 0
