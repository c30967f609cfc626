"""``create_app(predictor)``: the saliency service as a FastAPI app, testable without a socket.

Endpoints:

- ``POST /v1/saliency`` an image (multipart field ``image``, or a raw ``image/*`` body) ->
  ``?output=mask`` (default) an 8-bit PNG mask at the image's size; ``?output=cutout`` an RGBA PNG;
  ``?output=json`` the bounding box and area of the salient region. ``?threshold=T`` binarizes
  the mask (and sets the JSON's threshold, default 0.5).
- ``GET /healthz``, ``GET /v1/models``, and ``GET /`` a page to try it in a browser.

Errors are JSON, ``{"error": {"status": 413, "message": "..."}}``, whatever their status (500s too):
413 for uploads over the byte or pixel limits, 422 for files that are not images, 415 for other
content types, 408 for uploads slower than ``body_timeout_s``, 403 for requests from other web pages
(:mod:`csnet.serve.guard`).

An upload is read completely (within ``body_timeout_s``) before it takes one of the ``max_inflight``
processing slots, so slow clients cannot hold the slots; how many uploads are read at once is bounded by
the server's connection limit (``csnet serve --max-connections``).

Requests are decoded from memory (nothing reaches the file system) in the server's thread pool,
their network inputs are micro-batched (:class:`~csnet.serve.batching.MicroBatcher`) into one
forward pass, and each mask is resized and encoded back in the thread pool.
"""
# No ``from __future__ import annotations`` here: FastAPI reads the endpoint signatures, whose
# types (Request, ...) are imported inside create_app.
import asyncio
import logging
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, Dict, Literal, Optional, Sequence

import numpy as np

from csnet import __version__
from csnet.io.images import encode_image
from csnet.serve.batching import MicroBatcher
from csnet.serve.guard import OriginGuard
from csnet.serve.uploads import UploadError, read_image_upload

__all__ = ["create_app", "DEFAULT_MAX_UPLOAD_BYTES", "DEFAULT_MAX_PIXELS", "DEFAULT_BODY_TIMEOUT_S"]

log = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_BODY_TIMEOUT_S = 30.0
_STATIC = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
_PAGE_POLICY = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
                "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


def _static_text(name: str) -> str:
    return resources.files("csnet.serve").joinpath("static", name).read_text(encoding="utf-8")


def _region(mask: np.ndarray) -> Dict[str, Any]:
    """Area fraction and bounding box of the nonzero pixels of a binary mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    bbox = None
    if rows.size:
        bbox = {"x": int(cols[0]), "y": int(rows[0]), "width": int(cols[-1] - cols[0] + 1),
                "height": int(rows[-1] - rows[0] + 1)}
    return {"area": float(np.count_nonzero(mask)) / mask.size, "bbox": bbox}


def create_app(predictor, *, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
               max_pixels: int = DEFAULT_MAX_PIXELS, max_batch: int = 8, max_wait_ms: float = 5.0,
               max_inflight: int = 32, body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
               host: str = "127.0.0.1", allow_origins: Sequence[str] = (), allow_hosts: Sequence[str] = ()):
    """The FastAPI app serving ``predictor`` (a :class:`~csnet.infer.predictor.Predictor`).

    Args:
        predictor: shared by all requests.
        max_upload_bytes: larger uploads get 413 (checked while reading, before decoding).
        max_pixels: larger images get 413 (checked from the header, before decoding pixels).
        max_batch, max_wait_ms: micro-batching (see :class:`MicroBatcher`).
        max_inflight: requests decoded and predicted at once; the others wait with their upload read
            (bounds memory: each holds up to ``max_upload_bytes`` plus its decoded pixels).
        body_timeout_s: an upload not received completely within this many seconds gets 408.
        host: the address the server is bound to: with the loopback names, the ``Host`` values accepted.
        allow_origins, allow_hosts: other web pages' origins that may call the service, other ``Host``
            names it answers to (see :class:`~csnet.serve.guard.OriginGuard`).
    """
    try:
        from fastapi import FastAPI, Query, Request
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import HTMLResponse, JSONResponse, Response
        from starlette.concurrency import run_in_threadpool
        from starlette.exceptions import HTTPException
        from starlette.requests import ClientDisconnect
    except ImportError as error:
        raise ImportError("the service needs FastAPI: pip install 'csnet[serve]'") from error

    from csnet.io.images import ImageLoadError, load_image

    batcher = MicroBatcher(predictor.infer, max_batch=max_batch, max_wait_ms=max_wait_ms)
    page = _static_text("index.html")
    static = {name: _static_text(name) for name in _STATIC}

    @asynccontextmanager
    async def lifespan(app):
        yield
        batcher.close()

    # No /docs or /redoc: FastAPI's pages load Swagger/ReDoc from a CDN; /openapi.json stays.
    app = FastAPI(title="csnet", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Salient object detection with CSNet: masks and cutouts.")
    app.add_middleware(OriginGuard, bound_host=host, allow_origins=allow_origins, allow_hosts=allow_hosts)
    app.state.predictor = predictor
    app.state.batcher = batcher
    limits = {"max_upload_bytes": int(max_upload_bytes), "max_pixels": int(max_pixels),
              "max_batch": int(max_batch), "max_wait_ms": float(max_wait_ms), "max_inflight": int(max_inflight),
              "body_timeout_s": float(body_timeout_s)}
    inflight = asyncio.Semaphore(max_inflight)

    def error_response(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": {"status": status, "message": message}}, status_code=status)

    @app.exception_handler(UploadError)
    async def upload_error(request: Request, error: UploadError):
        return error_response(error.status, error.message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
                             for e in error.errors())
        return error_response(422, problems or "invalid request")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        return error_response(error.status_code, str(error.detail))

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, error: ClientDisconnect):
        # an everyday event (a closed tab, a cancelled upload): one line, no traceback; nobody reads the answer
        client = request.client.host if request.client else "a client"
        log.info("%s disconnected before its upload to %s was complete", client, request.url.path)
        return error_response(400, "the client disconnected before the upload was complete")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception):
        # Starlette logs the traceback after this answer; the client gets the JSON format, not plain text
        return error_response(500, f"internal error ({type(error).__name__}); the server log has the details")

    def decode(data: bytes):
        try:
            image = load_image(data, max_pixels=max_pixels)
        except ImageLoadError as error:
            status = 413 if error.problem.startswith("too large") else 422
            raise UploadError(status, f"cannot use the image: {error.problem}") from None
        return image, predictor.preprocess(image)

    def finish(image: np.ndarray, logits: np.ndarray, output: str, threshold: Optional[float]):
        height, width = image.shape[:2]
        if output == "json":
            cut = 0.5 if threshold is None else threshold
            binary = predictor.postprocess(logits, height, width, threshold=cut)
            return {"width": width, "height": height, "threshold": cut, **_region(binary),
                    "model": predictor.name}
        mask = predictor.postprocess(logits, height, width, threshold=threshold)
        if output == "cutout":
            from csnet.infer.compose import cutout

            return encode_image(cutout(image, mask))
        return encode_image(mask)

    @app.post("/v1/saliency", summary="saliency mask, cutout or region of an uploaded image",
              responses={200: {"content": {"image/png": {}}}, 413: {}, 415: {}, 422: {}})
    async def saliency(request: Request, output: Literal["mask", "cutout", "json"] = "mask",
                       threshold: Optional[float] = Query(None, ge=0.0, le=1.0)):
        try:
            data = await asyncio.wait_for(read_image_upload(request, max_upload_bytes), body_timeout_s)
        except asyncio.TimeoutError:
            raise UploadError(408, f"the upload was not received within {body_timeout_s:g} s") from None
        async with inflight:  # taken only now: a slow upload holds a connection, never a slot
            image, x = await run_in_threadpool(decode, data)
            del data
            logits = await asyncio.wrap_future(batcher.submit(x))
            result = await run_in_threadpool(finish, image, logits, output, threshold)
        if output == "json":
            return JSONResponse(result)
        return Response(result, media_type="image/png", headers={"Cache-Control": "no-store"})

    @app.get("/healthz", summary="liveness")
    async def healthz():
        return {"status": "ok", "model": predictor.name}

    @app.get("/v1/models", summary="the model being served and the limits")
    async def models():
        return {"models": [{**predictor.describe(), "limits": limits,
                            "batching": {"batches": batcher.batches, "items": batcher.items,
                                         "largest_batch": batcher.largest_batch}}]}

    @app.get("/", include_in_schema=False)
    async def index():
        return HTMLResponse(page, headers={"Content-Security-Policy": _PAGE_POLICY})

    @app.get("/static/{name}", include_in_schema=False)
    async def static_file(name: str):
        if name not in static:
            return error_response(404, f"no static file {name!r}")
        return Response(static[name], media_type=_STATIC[name], headers={"Cache-Control": "no-cache"})

    return app
