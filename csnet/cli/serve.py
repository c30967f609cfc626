"""``csnet serve``: the HTTP service (FastAPI + uvicorn, the ``serve`` extra) on 127.0.0.1:8000 by default.

``POST /v1/saliency`` (multipart ``image``) -> PNG mask; ``?output=cutout`` RGBA PNG; ``?output=json``
bounding box and area; ``?refine=`` per request. ``POST /api/remove`` is rembg's endpoint. ``GET /`` is a page
to try it, ``GET /healthz`` and ``GET /v1/models`` report.
"""
from __future__ import annotations

import argparse
import sys

from csnet.cli.main import CLIError
from csnet.cli.predict import add_model_arguments, make_predictor
# The defaults live in the app module, which imports FastAPI only inside create_app: --help works without it.
from csnet.serve.app import DEFAULT_MAX_MEMORY_BYTES, DEFAULT_MAX_PIXELS, DEFAULT_MAX_UPLOAD_BYTES


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 exposes it to the network)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    add_model_arguments(parser, batch=False)
    parser.add_argument("--refine", nargs="?", const="guided", default=None, choices=["guided", "matting", "none"],
                        help="refine masks and cutouts of requests that do not choose (?refine=) by default "
                             "(needs csnet[refine]): guided when given alone, or matting (seconds per photo)")
    limits = parser.add_argument_group("limits and batching")
    limits.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_BYTES / 2**20, metavar="MB",
                        help=f"largest upload accepted, in MiB (default {DEFAULT_MAX_UPLOAD_BYTES / 2**20:g}); "
                             "larger -> 413")
    limits.add_argument("--max-megapixels", type=float, default=DEFAULT_MAX_PIXELS / 1e6, metavar="MP",
                        help=f"largest image accepted, in megapixels (default {DEFAULT_MAX_PIXELS / 1e6:g}, as "
                             "csnet predict); larger -> 413")
    limits.add_argument("--max-memory-mb", type=float, default=DEFAULT_MAX_MEMORY_BYTES / 2**20, metavar="MB",
                        help=f"memory budget of the requests in progress, in MiB (default "
                             f"{DEFAULT_MAX_MEMORY_BYTES / 2**20:g}); requests wait for room, and one that "
                             "cannot fit alone gets 413")
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
    if args.max_upload_mb <= 0 or args.max_megapixels <= 0 or args.max_memory_mb <= 0 or args.max_batch < 1 \
            or args.max_wait_ms < 0:
        raise CLIError("--max-upload-mb, --max-megapixels, --max-memory-mb, --max-batch must be positive and "
                       "--max-wait-ms >= 0")
    if args.max_connections < 1 or not args.body_timeout > 0:
        raise CLIError("--max-connections and --body-timeout must be positive")
    for origin in args.allow_origin:
        if not origin.startswith(("http://", "https://")) or origin.count("/") != 2:
            raise CLIError(f"--allow-origin {origin}: expected scheme://host[:port], e.g. http://localhost:3000")
    refine = None if args.refine in (None, "none") else args.refine
    if refine is not None:
        from csnet.infer.refine import missing_modules

        if missing_modules(refine):
            raise CLIError(f"--refine {refine} needs {', '.join(missing_modules(refine))}: pip install 'csnet[refine]'")
    predictor = make_predictor(args)
    try:
        return create_app(predictor, max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
                          max_pixels=int(args.max_megapixels * 1e6),
                          max_memory_bytes=int(args.max_memory_mb * 1024 * 1024), max_batch=args.max_batch,
                          max_wait_ms=args.max_wait_ms, body_timeout_s=args.body_timeout, refine=refine,
                          host=args.host, allow_origins=args.allow_origin, allow_hosts=args.allow_host)
    except ImportError as error:
        raise CLIError(str(error)) from None


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn  # noqa: F401 - build_server imports it; the check here makes the missing extra one line
    except ImportError:
        raise CLIError("the service needs uvicorn: pip install 'csnet[serve]'") from None
    from csnet.serve.server import build_server

    if not 0 <= args.port <= 65535:
        raise CLIError(f"--port must be in 0..65535, got {args.port}")
    app = build_app(args)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"csnet serve: note: listening on {args.host}, reachable from other machines", file=sys.stderr)
    print(f"csnet serve: {app.state.predictor!r} at http://{args.host}:{args.port}/", file=sys.stderr)
    build_server(app, host=args.host, port=args.port, max_connections=args.max_connections,
                 log_level=args.log_level).run()
    return 0
