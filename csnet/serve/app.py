"""``create_app(predictor)``: the saliency service as a FastAPI app, testable without a socket.

Endpoints:

- ``POST /v1/saliency`` an image (multipart field ``image``, or a raw ``image/*`` body) ->
  ``?output=mask`` (default) an 8-bit PNG mask at the image's size; ``?output=cutout`` an RGBA PNG (its alpha
  is the mask: the web page shows and downloads both from this one answer); ``?output=json`` the bounding box
  and area of the salient region. ``?threshold=T`` binarizes the mask (and sets the JSON's threshold, default
  0.5); ``?refine=guided|matting|none`` snaps masks and cutouts to the image's edges (default: the app's
  ``refine``, ``csnet serve --refine``).
- ``POST /api/remove`` rembg's endpoint (multipart field ``file``, its options mapped in
  :mod:`csnet.serve.compat`) -> the RGBA cutout PNG.
- ``GET /healthz``, ``GET /v1/models``, and ``GET /`` a page to try it in a browser.

Errors are JSON, ``{"error": {"status": 413, "message": "..."}}``, whatever their status (500s too):
413 for uploads over the byte or pixel limits or the memory budget, 422 for files that are not images and
bad options, 415 for other content types, 408 for uploads slower than ``body_timeout_s``, 501 for a
refinement whose library the server lacks, 403 for requests from other web pages (:mod:`csnet.serve.guard`).

An upload is read completely (within ``body_timeout_s``) before it takes one of the ``max_inflight``
processing slots, so slow clients cannot hold the slots; how many uploads are read at once is bounded by
the server's connection limit (``csnet serve --max-connections``). Memory is bounded by
``max_memory_bytes`` (:mod:`csnet.serve.budget`), not by a pixel count: a 48-megapixel phone photo is served
with the defaults, and as many at once as the budget holds.

Requests are decoded from memory (nothing reaches the file system) in the server's thread pool,
their network inputs are micro-batched (:class:`~csnet.serve.batching.MicroBatcher`) into one
forward pass, and each mask is resized, refined and encoded back in the thread pool.
"""
# No ``from __future__ import annotations`` here: FastAPI reads the endpoint signatures, whose
# types (Request, ...) are imported inside create_app.
import asyncio
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any, Dict, Literal, Optional, Sequence

import numpy as np

from csnet import __version__
from csnet.infer.video import is_animated_gif as animated_gif
from csnet.io.images import DEFAULT_MAX_PIXELS, encode_image
from csnet.serve.batching import MicroBatcher
from csnet.serve.budget import MemoryBudget, header_pixels, request_cost
from csnet.serve.compat import REMBG_FORM_SCHEMA, over_color, parse_rembg_options
from csnet.serve.guard import OriginGuard
from csnet.serve.uploads import UploadError, read_upload

__all__ = ["create_app", "DEFAULT_MAX_UPLOAD_BYTES", "DEFAULT_MAX_PIXELS", "DEFAULT_MAX_MEMORY_BYTES",
           "DEFAULT_BODY_TIMEOUT_S"]

log = logging.getLogger(__name__)

#: Room for the JPEG of a 48-megapixel photo even at the detail per pixel of small photos (SECURITY.md).
DEFAULT_MAX_UPLOAD_BYTES = 48 * 1024 * 1024
#: Enough for one 100-megapixel image (the pixel limit, as in the CLI) refined with the guided filter.
DEFAULT_MAX_MEMORY_BYTES = 4 * 1024 * 1024 * 1024
DEFAULT_BODY_TIMEOUT_S = 30.0
_STATIC = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
_PAGE_POLICY = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
                "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
_UPLOAD_DOC = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
        "image": {"type": "string", "format": "binary",
                  "description": "the image (JPEG, PNG, WebP, BMP, TIFF, GIF); the field may also be named file"}}}},
    "image/*": {"schema": {"type": "string", "format": "binary"}}}}}
_REMBG_DOC = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": REMBG_FORM_SCHEMA}}}}
_ERRORS = {status: {"description": text, "content": {"application/json": {"example": {
    "error": {"status": status, "message": "..."}}}}} for status, text in (
    (408, "the upload took longer than the body timeout"), (413, "over the byte, pixel or memory limits"),
    (415, "not multipart/form-data or an image/* body"), (422, "not an image, or a bad option"),
    (501, "the refinement's library is not installed on the server"))}


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


@dataclass(frozen=True)
class _Job:
    """What one request asks for."""

    output: str  # "mask", "cutout" or "json"
    threshold: Optional[float] = None
    refine: Optional[str] = None  # "guided", "matting" or None
    background: Optional[tuple] = None  # RGBA colour the cutout is composited over (rembg's bgc)


def _available_refinements() -> list:
    from csnet.infer.refine import REFINE_MODES, missing_modules

    return [mode for mode in REFINE_MODES if not missing_modules(mode)]


def create_app(predictor, *, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
               max_pixels: int = DEFAULT_MAX_PIXELS, max_memory_bytes: int = DEFAULT_MAX_MEMORY_BYTES,
               max_batch: int = 8, max_wait_ms: float = 5.0, max_inflight: int = 32,
               body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S, refine: Optional[str] = None,
               host: str = "127.0.0.1", allow_origins: Sequence[str] = (), allow_hosts: Sequence[str] = ()):
    """The FastAPI app serving ``predictor`` (a :class:`~csnet.infer.predictor.Predictor`).

    Args:
        predictor: shared by all requests.
        max_upload_bytes: larger uploads get 413 (checked while reading, before decoding).
        max_pixels: larger images get 413 (checked from the header, before decoding pixels); by default the
            library's and the CLI's limit.
        max_memory_bytes: the memory budget of the requests in progress (:class:`MemoryBudget`): each
            reserves its estimated peak before decoding and waits for room; one that can never fit gets 413.
        max_batch, max_wait_ms: micro-batching (see :class:`MicroBatcher`).
        max_inflight: requests decoded and predicted at once; the others wait with their upload read.
        body_timeout_s: an upload not received completely within this many seconds gets 408.
        refine: the refinement of requests that do not choose one (``None``, ``"guided"``, ``"matting"``).
        host: the address the server is bound to: with the loopback names, the ``Host`` values accepted.
        allow_origins, allow_hosts: other web pages' origins that may call the service, other ``Host``
            names it answers to (see :class:`~csnet.serve.guard.OriginGuard`).

    Raises:
        csnet.infer.refine.RefineError: ``refine`` names a mode whose library is not installed.
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

    from csnet.infer.compose import cutout
    from csnet.infer.refine import RefineError, missing_modules, refine_mask, refined_cutout
    from csnet.io.images import ImageLoadError, load_image

    default_refine = None if refine in (None, "none") else refine
    if default_refine is not None and missing_modules(default_refine):
        raise RefineError(f"--refine {default_refine} needs {', '.join(missing_modules(default_refine))}: "
                          "pip install 'csnet[refine]'")
    refinements = _available_refinements()
    batcher = MicroBatcher(predictor.infer, max_batch=max_batch, max_wait_ms=max_wait_ms)
    budget = MemoryBudget(max_memory_bytes)
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
    app.state.budget = budget
    limits = {"max_upload_bytes": int(max_upload_bytes), "max_pixels": int(max_pixels),
              "max_memory_bytes": int(max_memory_bytes), "max_batch": int(max_batch),
              "max_wait_ms": float(max_wait_ms), "max_inflight": int(max_inflight),
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

    def choose_refine(asked: Optional[str]) -> Optional[str]:
        mode = default_refine if asked is None else (None if asked == "none" else asked)
        if mode is not None and mode not in refinements:
            raise UploadError(501, f"refine={mode} needs {', '.join(missing_modules(mode))} on the server: "
                                   "pip install 'csnet[refine]'")
        return mode

    async def receive(request: Request):
        try:
            return await asyncio.wait_for(read_upload(request, max_upload_bytes), body_timeout_s)
        except asyncio.TimeoutError:
            raise UploadError(408, f"the upload was not received within {body_timeout_s:g} s") from None

    def decode(data: bytes):
        try:
            image = load_image(data, max_pixels=max_pixels)
            warning = "animated GIF: only its first frame was used" if animated_gif(data) else None
        except ImageLoadError as error:
            status = 413 if error.problem.startswith("too large") else 422
            raise UploadError(status, f"cannot use the image: {error.problem}") from None
        return image, predictor.preprocess(image), warning

    def finish(image: np.ndarray, logits: np.ndarray, job: _Job):
        height, width = image.shape[:2]
        if job.output == "json":
            cut = 0.5 if job.threshold is None else job.threshold
            binary = predictor.postprocess(logits, height, width, threshold=cut)
            return {"width": width, "height": height, "threshold": cut, **_region(binary),
                    "model": predictor.name}
        mask = predictor.postprocess(logits, height, width, threshold=job.threshold)
        if job.output == "mask":
            return encode_image(mask if job.refine is None else refine_mask(image, mask, job.refine))
        # refined: the object's own colours where the alpha is partial, so no old background shows
        rgba = cutout(image, mask) if job.refine is None else refined_cutout(image, mask, job.refine)
        if job.background is not None:
            rgba = over_color(rgba, job.background)
        return encode_image(rgba)

    async def process(data: bytes, job: _Job):
        """Decode, predict and compose within the memory budget and a processing slot."""
        pixels = await run_in_threadpool(header_pixels, data)
        if pixels is not None and pixels > max_pixels:
            pixels = None  # refused from the header by decode, with the pixel limit in the message
        cost = request_cost(len(data), pixels, job.refine)
        if not budget.fits(cost):
            size = f"a {pixels / 1e6:.1f}-megapixel image" if pixels else "this upload"
            raise UploadError(413, f"{size} with refine={job.refine or 'none'} needs about {cost / 2**20:.0f} MiB, "
                                   f"more than the service's memory budget of {budget.capacity / 2**20:.0f} MiB "
                                   "(csnet serve --max-memory-mb)")
        async with inflight, budget.hold(cost):
            image, x, warning = await run_in_threadpool(decode, data)
            logits = await asyncio.wrap_future(batcher.submit(x))
            result = await run_in_threadpool(finish, image, logits, job)
        if warning is not None and isinstance(result, dict):
            result["warning"] = warning
        return result, warning

    def png(result: bytes, warning: Optional[str] = None) -> Response:
        headers = {"Cache-Control": "no-store"}
        if warning is not None:
            headers["X-Csnet-Warning"] = warning  # a clip is a video for csnet predict, not for one request
        return Response(result, media_type="image/png", headers=headers)

    @app.post("/v1/saliency", summary="saliency mask, cutout or region of an uploaded image",
              openapi_extra=_UPLOAD_DOC, responses={200: {"content": {"image/png": {}}}, **_ERRORS})
    async def saliency(request: Request, output: Literal["mask", "cutout", "json"] = "mask",
                       threshold: Optional[float] = Query(None, ge=0.0, le=1.0),
                       refine: Optional[Literal["none", "guided", "matting"]] = Query(
                           None, description="edge refinement of the mask and cutout (default: the server's)")):
        job = _Job(output, threshold, choose_refine(refine))
        data, _ = await receive(request)
        result, warning = await process(data, job)
        return JSONResponse(result) if output == "json" else png(result, warning)

    @app.post("/api/remove", summary="rembg-compatible: the cutout of an uploaded image (field file)",
              description="Takes what rembg's server takes (see csnet.serve.compat): a=true is alpha matting, "
                          "om=true the mask only, ?bgc=R,G,B,A a background colour; af, ab, ae, ppm, model and "
                          "extras are accepted and have no effect.",
              openapi_extra=_REMBG_DOC, responses={200: {"content": {"image/png": {}}}, **_ERRORS})
    async def rembg_remove(request: Request, bgc: Optional[str] = Query(None, description="R,G,B,A"),
                           refine: Optional[Literal["none", "guided", "matting"]] = Query(
                               None, description="csnet's refinement, unless a=true (default: the server's)")):
        data, fields = await receive(request)
        options = parse_rembg_options(fields, dict(request.query_params))
        mode = "matting" if options.matting else refine
        job = _Job("mask" if options.only_mask else "cutout", None, choose_refine(mode), options.background)
        return png(*await process(data, job))

    @app.get("/api/remove", include_in_schema=False)
    async def rembg_remove_url():
        return JSONResponse({"error": {"status": 405, "message": (
            "csnet does not download images from URLs (a server that fetches what a request names can be made "
            "to reach its own network); POST the file to /api/remove instead")}}, status_code=405,
            headers={"Allow": "POST"})

    @app.get("/healthz", summary="liveness")
    async def healthz():
        return {"status": "ok", "model": predictor.name}

    @app.get("/v1/models", summary="the model being served, the limits and the refinements available")
    async def models():
        return {"models": [{**predictor.describe(), "limits": limits,
                            "refine": {"default": default_refine or "none", "available": refinements},
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
