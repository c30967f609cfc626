"""Reading an uploaded image into memory, with a byte limit, never touching the file system.

Starlette's ``request.form()`` spools uploads over 1 MB to temporary files; here the body is streamed
into memory (refused as soon as it passes the limit) and multipart bodies are parsed with
python-multipart's in-memory parser. A raw body with an ``image/*`` or
``application/octet-stream`` content type is taken as the image itself.
"""
from __future__ import annotations

from typing import AsyncIterator, Optional

__all__ = ["UploadError", "read_image_upload", "read_upload", "MULTIPART_OVERHEAD"]

#: Allowance for multipart boundaries and part headers on top of the image's own bytes.
MULTIPART_OVERHEAD = 64 * 1024
_FIELD_NAMES = (b"image", b"file")
#: Longest multipart boundary accepted (RFC 2046 allows 70; python-multipart refuses over 256).
MAX_BOUNDARY_BYTES = 256
#: Text fields beside the image (rembg's form options): longer values and fields beyond the count are ignored.
MAX_FIELD_BYTES = 1024
MAX_FIELDS = 32


class UploadError(Exception):
    """A request the service refuses: ``status`` (413, 415, 422, 400) and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def _read_body(chunks: AsyncIterator[bytes], limit: int, declared: Optional[int], image_limit: int) -> bytes:
    if declared is not None and declared > limit:
        raise UploadError(413, f"upload of {declared} bytes exceeds the limit of {image_limit} bytes")
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise UploadError(413, f"upload exceeds the limit of {image_limit} bytes")
    return bytes(body)


def _parse_multipart(body: bytes, content_type: str) -> tuple[bytes, dict[str, str]]:
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise UploadError(400, "multipart body without a boundary")
    if len(boundary) > MAX_BOUNDARY_BYTES:  # python-multipart raises on these, which was a 500
        raise UploadError(400, f"multipart boundary of {len(boundary)} bytes is longer than "
                               f"{MAX_BOUNDARY_BYTES} bytes")
    parts: list[dict] = []
    state: dict = {}

    def on_part_begin() -> None:
        state.update(headers={}, field=bytearray(), value=bytearray(), data=[])

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][bytes(state["field"]).lower()] = bytes(state["value"])
        state["field"], state["value"] = bytearray(), bytearray()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state["data"].append(data[start:end])

    def on_part_end() -> None:
        _, disposition = parse_options_header(state["headers"].get(b"content-disposition", b""))
        parts.append({"name": disposition.get(b"name", b""), "filename": disposition.get(b"filename"),
                      "data": b"".join(state["data"])})

    try:
        parser = MultipartParser(boundary, {
            "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
            "on_header_end": on_header_end, "on_part_data": on_part_data, "on_part_end": on_part_end,
        })
        parser.write(body)
        parser.finalize()
    except Exception as error:  # noqa: BLE001 - python-multipart raises several error types
        raise UploadError(400, f"malformed multipart body ({type(error).__name__})") from error
    image = next((part for name in _FIELD_NAMES for part in parts if part["name"] == name), None)
    if image is None:
        image = next((part for part in parts if part["filename"] is not None), None)
    if image is None:
        raise UploadError(422, "no image in the form: send the file in a field named 'image' (or 'file')")
    fields: dict[str, str] = {}
    for part in parts:
        if part is not image and part["filename"] is None and len(part["data"]) <= MAX_FIELD_BYTES \
                and len(fields) < MAX_FIELDS:
            fields.setdefault(part["name"].decode("latin-1"), part["data"].decode("utf-8", "replace"))
    return image["data"], fields


async def read_image_upload(request, max_bytes: int) -> bytes:
    """The uploaded image's bytes from a multipart form (field ``image`` or ``file``) or a raw body.

    Raises:
        UploadError: 413 over ``max_bytes``, 415 for other content types, 400/422 for bad forms.
    """
    return (await read_upload(request, max_bytes))[0]


async def read_upload(request, max_bytes: int) -> tuple[bytes, dict[str, str]]:
    """The uploaded image's bytes and the form's short text fields (``{}`` for a raw body): see
    :func:`read_image_upload`."""
    fields: dict[str, str] = {}
    content_type = request.headers.get("content-type", "")
    kind = content_type.split(";")[0].strip().lower()
    declared = request.headers.get("content-length")
    declared_bytes = int(declared) if declared and declared.isdigit() else None
    if kind == "multipart/form-data":
        body = await _read_body(request.stream(), max_bytes + MULTIPART_OVERHEAD, declared_bytes, max_bytes)
        data, fields = _parse_multipart(body, content_type)
    elif kind.startswith("image/") or kind == "application/octet-stream":
        data = await _read_body(request.stream(), max_bytes, declared_bytes, max_bytes)
    else:
        raise UploadError(415, "send the image as multipart/form-data (field 'image') or as a raw body "
                               "with an image/* content type")
    if len(data) > max_bytes:
        raise UploadError(413, f"image of {len(data)} bytes exceeds the limit of {max_bytes} bytes")
    if not data:
        raise UploadError(422, "the uploaded image is empty (0 bytes)")
    return data, fields
