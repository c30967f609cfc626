"""Hostile images made here: absurdly wide ones, formats a saliency tool does not decode, TIFF layouts Pillow
cannot convert. Each gets a one-line ImageLoadError before any pixel is decoded."""
import io
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image

from csnet.io.images import DEFAULT_MAX_SIDE, FORMATS, ImageLoadError, load_image, load_mask


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header says ``width x height`` (8-bit gray) with one empty IDAT: 60 bytes."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def encode(array: np.ndarray, image_format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=image_format)
    return buffer.getvalue()


def tiff(width: int, height: int, samples: int, bits: int, sample_format: int) -> bytes:
    """An uncompressed little-endian TIFF with any samples per pixel / bits / SampleFormat (1 uint, 3 float)."""
    data = bytes(width * height * samples * bits // 8)
    photometric = 1 if samples == 1 else 2
    lists = struct.pack(f"<{samples}H", *[bits] * samples) + struct.pack(f"<{samples}H", *[sample_format] * samples)
    tags = [(256, 3, 1, width), (257, 3, 1, height), (258, 3, samples, "bits"), (259, 3, 1, 1),
            (262, 3, 1, photometric), (273, 4, 1, "data"), (277, 3, 1, samples), (278, 3, 1, height),
            (279, 4, 1, len(data)), (284, 3, 1, 1), (339, 3, samples, "format")]
    lists_at = 8 + 2 + 12 * len(tags) + 4
    where = {"bits": lists_at, "format": lists_at + 2 * samples, "data": lists_at + len(lists)}
    entries = b""
    for tag, kind, count, value in tags:
        if value in ("bits", "format") and count <= 2:
            inline = struct.pack(f"<{count}H", *[bits if value == "bits" else sample_format] * count)
            entries += struct.pack("<HHI", tag, kind, count) + inline.ljust(4, b"\0")
            continue
        value = where.get(value, value)
        packed = struct.pack("<I", value) if kind == 4 or count > 2 else struct.pack("<H2x", value)
        entries += struct.pack("<HHI", tag, kind, count) + packed
    return b"II*\0" + struct.pack("<IH", 8, len(tags)) + entries + b"\0\0\0\0" + lists + data


@pytest.mark.parametrize("width", [1_000_000, 39_000_000])
def test_absurdly_wide_png_is_refused_from_its_header(width):
    data = png_header_only(width, 1)
    assert len(data) < 100
    tracemalloc.start()
    try:
        with pytest.raises(ImageLoadError, match=rf"too large: {width}x1 has a side over the limit of "
                                                 rf"{DEFAULT_MAX_SIDE} pixels \(max_side\)"):
            load_image(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000  # nothing the size of the image was allocated


def test_real_wide_png_is_refused_and_a_wide_panorama_is_not():
    wide = encode(np.zeros((1, 1_000_000), np.uint8))  # a real, decodable 1 KB file
    with pytest.raises(ImageLoadError, match="side over the limit"):
        load_mask(wide)
    assert load_mask(wide, max_side=None).shape == (1, 1_000_000)  # the limit is the user's to lift
    panorama = encode(np.zeros((4, DEFAULT_MAX_SIDE), np.uint8))
    assert load_image(panorama).shape == (4, DEFAULT_MAX_SIDE, 3)


EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"
       b"%%EndComments\nnewpath 0 0 moveto 10 10 lineto stroke\nshowpage\n%%EOF\n")


def test_eps_is_not_handed_to_ghostscript(monkeypatch):
    calls = []
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", lambda self: calls.append("eps") or 1 / 0)
    with pytest.raises(ImageLoadError, match=r"<bytes>: PostScript/EPS files are not decoded \(supported "
                                             r"formats: JPEG, PNG"):
        load_image(EPS)
    assert calls == []


@pytest.mark.parametrize("image_format, match", [
    ("ICO", "ICO files are not decoded"), ("PPM", "not an image in a supported format"),
    ("TGA", "not an image in a supported format"), ("PCX", "not an image in a supported format"),
])
def test_other_pillow_formats_are_refused(image_format, match):
    with pytest.raises(ImageLoadError, match=match):
        load_image(encode(np.zeros((8, 8, 3), np.uint8), image_format))


@pytest.mark.parametrize("image_format", FORMATS)
def test_every_supported_format_decodes(image_format):
    array = np.full((6, 10, 3), 100, np.uint8)
    assert load_image(encode(array, image_format)).shape == (6, 10, 3)


@pytest.mark.parametrize("samples, bits, sample_format, problem", [
    (3, 32, 3, "3 samples per pixel of 32-bit floating-point"),
    (5, 8, 1, "5 samples per pixel of 8-bit unsigned integer"),
    (3, 64, 3, "3 samples per pixel of 64-bit floating-point"),
])
def test_tiff_layouts_pillow_cannot_convert_are_named(samples, bits, sample_format, problem):
    with pytest.raises(ImageLoadError, match=rf"unsupported TIFF layout: {problem}; save it as") as info:
        load_image(tiff(4, 3, samples, bits, sample_format))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("samples, bits, sample_format", [(1, 32, 3), (1, 16, 1), (3, 16, 1), (4, 16, 1)])
def test_float_and_16_bit_tiffs_load(samples, bits, sample_format):
    data = tiff(4, 3, samples, bits, sample_format)
    assert load_image(data).shape == (3, 4, 3) and load_mask(data).shape == (3, 4)


# ---------------------------------------------------------------- the resizes stay small whatever the shape
def _peak_bytes(function, *args, **kwargs):
    tracemalloc.start()
    try:
        result = function(*args, **kwargs)
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_wide_image_resizes_in_memory_proportional_to_the_output():
    from csnet.infer.resize import resize_image

    width = 200_000
    image = np.random.default_rng(0).integers(0, 256, (1, width, 3), dtype=np.uint8)
    resized, peak = _peak_bytes(resize_image, image, 224, 224, divisor=255.0)
    assert resized.shape == (224, 224, 3)
    assert peak < 8 * 224 * 224 * 3 * 8  # a few output-sized float64 arrays (9.6 MB); 224 full rows were 134 MB


def test_wide_map_is_built_in_bounded_blocks():
    from csnet.infer.resize import resized_row_blocks

    width = 200_000
    logits = np.random.default_rng(0).normal(size=(224, 224))
    out = np.empty((1, width), np.uint8)

    def build():
        for rows, block in resized_row_blocks(logits, 1, width):
            out[rows] = np.clip(np.rint(block * 255.0), 0, 255)

    _, peak = _peak_bytes(build)
    assert peak < 16 * width * 8  # a few 1 x W float64 rows (26 MB); the 224 x W intermediate was 358 MB


@pytest.mark.parametrize("shape", [(1, 3000), (3000, 1), (2, 5001), (37, 53)])
def test_protocol_is_still_torch_bit_for_bit_on_extreme_shapes(shape):
    import torch
    import torch.nn.functional as F

    from csnet.infer import protocol

    def bilinear(x, size):
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=False)

    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    x = bilinear(torch.from_numpy(image.astype(np.float64)).permute(2, 0, 1)[None] / 255.0, (224, 224))
    mean = torch.tensor(protocol.IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(protocol.IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
    assert torch.equal(protocol.preprocess(image), ((x - mean) / std).float())
    logits = torch.from_numpy(rng.normal(0, 3, (224, 224)))
    prob = bilinear(torch.sigmoid(logits)[None, None], shape)[0, 0]
    expected = torch.round(prob * 255.0).clamp(0, 255).to(torch.uint8).numpy()
    assert np.array_equal(protocol.postprocess(logits, shape), expected)
