"""Hostile clients against the service, made here: slow and dropped uploads, foreign origins and Host
names (DNS rebinding), long multipart boundaries, absurdly wide images, internal failures."""
import asyncio
import io
import json
import logging
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from tests.infer.helpers import gradient_image, shared_predictor

pytestmark = pytest.mark.usefixtures("one_torch_thread")
pytest.importorskip("fastapi")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from csnet.serve.app import create_app  # noqa: E402

LOCAL = "http://127.0.0.1:8000"


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def error_of(response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"]["status"] == status
    return body["error"]["message"]


async def call(app, body_parts, *, headers=(), path="/v1/saliency"):
    """One raw ASGI request whose body arrives as ``body_parts`` (bytes, or "stall" / "disconnect")."""
    parts = list(body_parts)
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"image/png"), *headers],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}

    async def receive():
        if not parts:
            await asyncio.sleep(3600)  # a client that never sends the rest
        part = parts.pop(0)
        if part == "stall":
            await asyncio.sleep(3600)
        if part == "disconnect":
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": part, "more_body": bool(parts)}

    sent = []

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body


def test_slow_uploads_do_not_hold_the_prediction_slots():
    app = create_app(shared_predictor(), max_inflight=1, body_timeout_s=1.5, max_wait_ms=1)
    image = png(gradient_image(32, 32))

    async def scenario():
        slow = [asyncio.create_task(call(app, [image[:10], "stall"])) for _ in range(4)]
        await asyncio.sleep(0.2)  # the slow clients are now mid-upload
        fast_status, _ = await asyncio.wait_for(call(app, [image]), 30)
        assert not any(task.done() for task in slow)  # answered while all four still upload
        return fast_status, await asyncio.wait_for(asyncio.gather(*slow), 10)

    fast_status, slow_results = asyncio.run(scenario())
    assert fast_status == 200
    for status, body in slow_results:
        assert status == 408 and "not received within 1.5 s" in json.loads(body)["error"]["message"]


def test_dropped_client_logs_one_line_without_traceback(caplog):
    app = create_app(shared_predictor())
    with caplog.at_level(logging.DEBUG):
        status, _ = asyncio.run(call(app, [b"\x89PNG", "disconnect"]))
    assert status == 400
    lines = [r for r in caplog.records if "disconnect" in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None and lines[0].levelno == logging.INFO
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


class _Boom:
    """A predictor that fails unexpectedly while preparing the input."""

    name = "boom"

    def preprocess(self, image):
        raise RuntimeError("unexpected failure")

    def infer(self, batch):
        raise AssertionError("not reached")


def test_internal_errors_use_the_json_format():
    with TestClient(create_app(_Boom()), base_url=LOCAL, raise_server_exceptions=False) as client:
        message = error_of(client.post("/v1/saliency", content=png(gradient_image(8, 8)),
                                       headers={"content-type": "image/png"}), 500)
    assert "RuntimeError" in message and "unexpected failure" not in message  # no internals leak


@pytest.fixture(scope="module")
def client(one_torch_thread):
    app = create_app(shared_predictor(), max_wait_ms=1, allow_origins=["http://localhost:3000"])
    with TestClient(app, base_url=LOCAL) as test_client:
        yield test_client


def post(client, headers=None, data=None):
    return client.post("/v1/saliency", content=data or png(gradient_image(16, 16)),
                       headers={"content-type": "image/png", **(headers or {})})


def test_long_multipart_boundary_is_a_400(client):
    boundary = "b" * 300
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n")
    body = head.encode() + png(gradient_image(8, 8)) + f"\r\n--{boundary}--\r\n".encode()
    response = client.post("/v1/saliency", content=body,
                           headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert "boundary of 300 bytes is longer than 256" in error_of(response, 400)


def test_other_origins_are_refused(client):
    foreign = post(client, {"origin": "https://evil.example"})
    assert "origin 'https://evil.example' are refused" in error_of(foreign, 403)
    assert "--allow-origin" in error_of(post(client, {"origin": "null"}), 403)
    assert error_of(client.get("/v1/models", headers={"origin": "http://evil.example"}), 403)
    assert post(client, {"origin": LOCAL}).status_code == 200  # the service's own page
    assert post(client, {"origin": "http://localhost:3000"}).status_code == 200  # allowed with --allow-origin
    assert post(client).status_code == 200  # no Origin: curl, scripts


def test_dns_rebinding_host_is_refused(client):
    assert "Host 'rebind.evil.example:8000' is not this service's" in error_of(
        post(client, {"host": "rebind.evil.example:8000"}), 403)
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000"):
        assert post(client, {"host": host}).status_code == 200
    public = create_app(shared_predictor(), host="0.0.0.0")  # cannot know its names: Host is not checked
    with TestClient(public, base_url="http://192.0.2.7:8000") as other:
        assert post(other).status_code == 200
        assert error_of(post(other, {"origin": "http://evil.example"}), 403)


def test_bound_host_and_allowed_hosts_are_accepted():
    app = create_app(shared_predictor(), host="10.1.2.3", allow_hosts=["saliency.internal"])
    with TestClient(app, base_url="http://10.1.2.3:8000") as client:
        assert post(client).status_code == 200
        assert post(client, {"host": "saliency.internal"}).status_code == 200
        assert error_of(post(client, {"host": "10.1.2.4:8000"}), 403)


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.parametrize("width", [1_000_000, 39_000_000])
def test_absurdly_wide_images_get_413(client, width):
    assert "side over the limit" in error_of(post(client, data=_png_header_only(width, 1)), 413)


def test_eps_upload_is_not_decoded(client):
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n%%EOF\n"
    assert "EPS files are not decoded" in error_of(post(client, data=eps), 422)
