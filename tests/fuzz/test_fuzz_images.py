"""Fuzz target: image and mask decoding (csnet.io.images), on mutated files of every accepted format and
on PNGs built chunk by chunk with valid CRCs (so the mutations reach Pillow's decoders, not its CRC check)."""
from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from csnet.io.images import ImageLoadError, load_image, load_mask
from tests.fuzz.strategies import fuzz_settings, mutated

#: Small limits: a mutated header may claim any size, and the check must refuse it before decoding.
MAX_PIXELS = 1 << 20
MAX_SIDE = 4096


def _seed(fmt: str, mode: str, **options) -> bytes:
    rng = np.random.default_rng(0)
    if mode in ("I;16", "F"):
        values = rng.integers(0, 60000, (7, 9)).astype(np.uint16 if mode == "I;16" else np.float32)
        image = Image.fromarray(values if mode == "I;16" else values / 60000)
    else:
        image = Image.fromarray(rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


SEEDS = [_seed("PNG", "RGB"), _seed("PNG", "RGBA"), _seed("PNG", "P"), _seed("PNG", "I;16"), _seed("PNG", "L"),
         _seed("JPEG", "RGB"), _seed("JPEG", "CMYK"), _seed("GIF", "P"), _seed("BMP", "RGB"), _seed("WEBP", "RGB"),
         _seed("TIFF", "RGB"), _seed("TIFF", "F"), _seed("TIFF", "I;16"), _seed("TIFF", "RGB", compression="tiff_lzw")]


def _check(data: bytes) -> None:
    for reader, ndim in ((load_image, 3), (load_mask, 2)):
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                out = reader(data, max_pixels=MAX_PIXELS, max_side=MAX_SIDE)
            assert not caught, [str(w.message) for w in caught]  # a result or one error, no warning noise
        except ImageLoadError as error:
            assert "\n" not in str(error) and str(error).startswith("cannot load image <bytes>: ")
            continue
        assert out.dtype == np.uint8 and out.ndim == ndim and out.shape[0] * out.shape[1] <= MAX_PIXELS
        assert max(out.shape[:2]) <= MAX_SIDE and (ndim == 2 or out.shape[2] == 3)


@fuzz_settings()
@given(mutated(SEEDS))
def test_mutated_images_decode_or_raise_image_load_error(data: bytes) -> None:
    _check(data)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


@st.composite
def png_files(draw) -> bytes:
    """PNGs with any IHDR (sizes up to 2^31, every bit depth and colour type, interlacing), optional PLTE/tRNS
    and an IDAT of random (or randomly sized, valid zlib) data, all with correct CRCs."""
    width = draw(st.one_of(st.integers(0, 40), st.sampled_from((4097, 1 << 16, 1 << 31 - 1, 0xFFFFFFFF))))
    height = draw(st.one_of(st.integers(0, 40), st.sampled_from((1, 1 << 20, 0x7FFFFFFF))))
    depth = draw(st.sampled_from((1, 2, 4, 8, 16, 3, 0, 32)))
    colour = draw(st.sampled_from((0, 2, 3, 4, 6, 1, 5, 7)))
    interlace = draw(st.sampled_from((0, 1, 2)))
    chunks = [_chunk(b"IHDR", struct.pack(">IIBBBBB", width & 0xFFFFFFFF, height & 0xFFFFFFFF, depth, colour, 0, 0,
                                          interlace))]
    if draw(st.booleans()):
        chunks.append(_chunk(b"PLTE", draw(st.binary(max_size=800))))
    if draw(st.booleans()):
        chunks.append(_chunk(b"tRNS", draw(st.binary(max_size=300))))
    if draw(st.booleans()):
        raw = draw(st.binary(max_size=4000))
        chunks.append(_chunk(b"IDAT", zlib.compress(raw) if draw(st.booleans()) else raw))
    else:  # a valid stream of the right-ish size, mostly zeros
        size = draw(st.integers(0, 40 * 41 * 8))
        chunks.append(_chunk(b"IDAT", zlib.compress(bytes(size))))
    if draw(st.booleans()):
        chunks.append(_chunk(b"IEND", b""))
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


@fuzz_settings()
@given(png_files())
def test_structured_pngs_decode_or_raise_image_load_error(data: bytes) -> None:
    _check(data)


@fuzz_settings()
@given(st.binary(max_size=512))
def test_random_bytes_raise_image_load_error(data: bytes) -> None:
    _check(data)
