"""Fuzz target: the service's upload reader (csnet.serve.uploads.read_upload), multipart and raw bodies,
through a stand-in request (headers + a chunked body stream), without a socket."""
from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("python_multipart")

from csnet.serve.uploads import MULTIPART_OVERHEAD, UploadError, read_upload  # noqa: E402
from tests.fuzz.strategies import fuzz_settings, mutated  # noqa: E402

MAX_BYTES = 4096
STATUSES = {400, 408, 413, 415, 422}


class FakeRequest:
    def __init__(self, headers: dict[str, str], body: bytes, chunk: int) -> None:
        self.headers, self.body, self.chunk = headers, body, max(1, chunk)

    async def stream(self):
        for start in range(0, len(self.body), self.chunk):
            yield self.body[start:start + self.chunk]


def _run(content_type: str, body: bytes, chunk: int, declared: str | None) -> None:
    headers = {"content-type": content_type}
    if declared is not None:
        headers["content-length"] = declared
    try:
        data, fields = asyncio.run(read_upload(FakeRequest(headers, body, chunk), MAX_BYTES))
    except UploadError as error:
        assert error.status in STATUSES and "\n" not in error.message
        return
    assert isinstance(data, bytes) and 0 < len(data) <= MAX_BYTES
    assert isinstance(fields, dict) and len(fields) <= 32
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())


def _form(boundary: bytes, parts: list[tuple[bytes, bytes]]) -> bytes:
    out = b""
    for headers, payload in parts:
        out += b"--" + boundary + b"\r\n" + headers + b"\r\n\r\n" + payload + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


SEED_BOUNDARY = b"csnetfuzzboundary"
SEEDS = [
    _form(SEED_BOUNDARY, [(b'Content-Disposition: form-data; name="image"; filename="a.png"\r\n'
                           b"Content-Type: image/png", b"\x89PNG\r\n\x1a\n" + bytes(64))]),
    _form(SEED_BOUNDARY, [(b'Content-Disposition: form-data; name="model"', b"u2netp"),
                          (b'Content-Disposition: form-data; name="file"; filename="b.jpg"', b"\xff\xd8\xff" + bytes(40))]),
    _form(SEED_BOUNDARY, [(b'Content-Disposition: form-data; name="a"', b"x" * 2000)] * 3),
]

header_line = st.one_of(
    st.just(b'Content-Disposition: form-data; name="image"; filename="x.png"'),
    st.builds(lambda n, f: b'Content-Disposition: form-data; name="' + n + b'"' + (b'; filename="' + f + b'"' if f else b""),
              st.binary(max_size=20), st.one_of(st.none(), st.binary(max_size=20))),
    st.binary(max_size=80),
)


@st.composite
def multipart_requests(draw) -> tuple[str, bytes]:
    boundary = draw(st.one_of(st.just(SEED_BOUNDARY), st.binary(min_size=0, max_size=300)))
    parts = draw(st.lists(st.tuples(header_line, st.binary(max_size=MAX_BYTES + 64)), max_size=6))
    body = _form(boundary, parts) if draw(st.booleans()) else draw(mutated([_form(boundary, parts) or b"-"]))
    params = draw(st.sampled_from(("; boundary={}", '; boundary="{}"', "; boundary={}; charset=utf-8", "", ";;;")))
    text = boundary.decode("latin-1")
    return "multipart/form-data" + params.format(text), body


@fuzz_settings()
@given(multipart_requests(), st.integers(1, 5000), st.one_of(st.none(), st.text(max_size=12)))
def test_built_multipart_bodies_are_read_or_refused(request, chunk: int, declared) -> None:
    content_type, body = request
    _run(content_type, body, chunk, declared)


@fuzz_settings()
@given(mutated(SEEDS), st.integers(1, 5000), st.sampled_from((None, "0", "10", str(MAX_BYTES + MULTIPART_OVERHEAD + 1))))
def test_mutated_forms_are_read_or_refused(body: bytes, chunk: int, declared) -> None:
    _run(f"multipart/form-data; boundary={SEED_BOUNDARY.decode()}", body, chunk, declared)


@fuzz_settings()
@given(st.text(max_size=80), st.binary(max_size=MAX_BYTES + 10), st.integers(1, 5000))
def test_any_content_type_is_read_or_refused(content_type: str, body: bytes, chunk: int) -> None:
    _run(content_type, body, chunk, None)
