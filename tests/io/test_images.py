"""load_image / load_mask on every image mode, EXIF, bombs and broken files; save_png."""
from __future__ import annotations

import io
import pickle
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from csnet.io.images import ImageLoadError, encode_image, load_image, load_mask, save_png

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (12, 20, 3), dtype=np.uint8)  # H=12, W=20: orientation is visible
GRAY = RNG.integers(0, 256, (12, 20), dtype=np.uint8)


def _save(tmp_path: Path, im: Image.Image, name: str, **kwargs) -> Path:
    path = tmp_path / name
    im.save(path, **kwargs)
    return path


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` (nothing is ever decoded from it)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


# ---------------------------------------------------------------- modes


def test_rgb_png_roundtrip_from_path_bytes_and_fileobj(tmp_path):
    path = _save(tmp_path, Image.fromarray(RGB), "a.png")
    with open(path, "rb") as stream:
        for source in (path, str(path), path.read_bytes(), stream):
            out = load_image(source)
            assert out.dtype == np.uint8 and out.shape == (12, 20, 3)
            np.testing.assert_array_equal(out, RGB)


def test_pil_image_source():
    np.testing.assert_array_equal(load_image(Image.fromarray(RGB)), RGB)


def test_grayscale_image_becomes_three_equal_channels(tmp_path):
    out = load_image(_save(tmp_path, Image.fromarray(GRAY), "g.png"))
    assert out.shape == (12, 20, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], GRAY)
    np.testing.assert_array_equal(load_mask(tmp_path / "g.png"), GRAY)


def test_rgba_drops_alpha(tmp_path):
    rgba = np.dstack([RGB, np.zeros((12, 20), np.uint8)])  # fully transparent
    path = _save(tmp_path, Image.fromarray(rgba, "RGBA"), "a.png")
    np.testing.assert_array_equal(load_image(path), RGB)
    expected = np.asarray(Image.fromarray(RGB).convert("L"))
    np.testing.assert_array_equal(load_mask(path), expected)


def test_la_drops_alpha(tmp_path):
    la = Image.merge("LA", [Image.fromarray(GRAY), Image.fromarray(255 - GRAY)])
    path = _save(tmp_path, la, "la.png")
    np.testing.assert_array_equal(load_image(path)[:, :, 1], GRAY)
    np.testing.assert_array_equal(load_mask(path), GRAY)


def test_cmyk_jpeg(tmp_path):
    cmyk = Image.fromarray(RGB).convert("CMYK")
    path = _save(tmp_path, cmyk, "c.jpg", quality=100)
    assert Image.open(path).mode == "CMYK"
    out = load_image(path)
    assert out.shape == (12, 20, 3)
    assert np.abs(out.astype(int) - RGB.astype(int)).mean() < 12  # JPEG loss only
    assert load_mask(path).shape == (12, 20)


def test_palette_with_transparency(tmp_path):
    pal = Image.new("P", (20, 12))
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    pal.paste(1, (0, 0, 10, 12))
    pal.paste(2, (10, 0, 20, 12))
    pal.info["transparency"] = 1
    for name in ("p.png", "p.gif"):
        path = _save(tmp_path, pal, name, transparency=1)
        out = load_image(path)
        assert out.shape == (12, 20, 3)
        # Alpha is dropped, not composited: the transparent entry keeps its palette colour.
        np.testing.assert_array_equal(out[0, 0], [255, 0, 0])
        np.testing.assert_array_equal(out[0, 19], [0, 255, 0])
        assert load_mask(path).shape == (12, 20)


def test_one_bit(tmp_path):
    bits = GRAY > 128
    path = _save(tmp_path, Image.fromarray(bits), "b.png")
    assert Image.open(path).mode == "1"
    np.testing.assert_array_equal(load_mask(path), np.where(bits, 255, 0))
    np.testing.assert_array_equal(load_image(path)[:, :, 0], np.where(bits, 255, 0))


def test_16_bit_png_scaled(tmp_path):
    values = (GRAY.astype(np.uint16) * 257)  # full 16-bit range
    path = _save(tmp_path, Image.fromarray(values), "16.png")
    assert Image.open(path).mode.startswith("I;16")
    np.testing.assert_array_equal(load_mask(path), GRAY)
    np.testing.assert_array_equal(load_image(path)[:, :, 2], GRAY)


def test_16_bit_holding_8_bit_values_kept(tmp_path):
    # 8-bit masks saved as 16-bit files are common; dividing by 257 would erase them.
    path = _save(tmp_path, Image.fromarray(GRAY.astype(np.uint16)), "16small.png")
    np.testing.assert_array_equal(load_mask(path), GRAY)


def test_32_bit_int_tiff(tmp_path):
    values = GRAY.astype(np.int32) * 257
    path = _save(tmp_path, Image.fromarray(values), "i.tif")
    assert Image.open(path).mode == "I"
    np.testing.assert_array_equal(load_mask(path), GRAY)
    negative = _save(tmp_path, Image.fromarray(values - 70000), "neg.tif")
    out = load_mask(negative)  # out of any integer range: stretched min..max
    assert out.min() == 0 and out.max() == 255


def test_float_tiff(tmp_path):
    unit = GRAY.astype(np.float32) / 255.0
    path = _save(tmp_path, Image.fromarray(unit), "f.tif")
    assert Image.open(path).mode == "F"
    np.testing.assert_array_equal(load_mask(path), GRAY)
    np.testing.assert_array_equal(load_image(path)[:, :, 0], GRAY)
    scaled = _save(tmp_path, Image.fromarray(unit * 255.0), "f255.tif")
    np.testing.assert_array_equal(load_mask(scaled), GRAY)
    nan = unit.copy()
    nan[0, 0] = np.nan
    assert load_mask(_save(tmp_path, Image.fromarray(nan), "nan.tif"))[0, 0] == 0


# ---------------------------------------------------------------- EXIF


@pytest.mark.parametrize("orientation, transform", [
    (3, lambda a: np.rot90(a, 2)),
    (6, lambda a: np.rot90(a, -1)),  # rotate 90 clockwise for display
    (8, lambda a: np.rot90(a, 1)),
    (2, lambda a: a[:, ::-1]),
])
def test_exif_orientation_applied(tmp_path, orientation, transform):
    blocks = np.zeros((12, 20, 3), np.uint8)
    blocks[:6, :10] = 255  # a bright top-left quadrant survives JPEG and shows the rotation
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = _save(tmp_path, Image.fromarray(blocks), "r.jpg", exif=exif, quality=95)
    out = load_image(path)
    expected = transform(blocks)
    assert out.shape == expected.shape
    assert np.abs(out.astype(int) - expected.astype(int)).mean() < 8
    assert load_mask(path).shape == expected.shape[:2]
    assert load_image(path, exif=False).shape == (12, 20, 3)


# ---------------------------------------------------------------- failures


def test_decompression_bomb_refused_without_pillow_warning(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header(12000, 9000))  # 108 MP: Pillow would only warn
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageLoadError, match="too large") as info:
            load_image(path)
    assert str(path) in str(info.value)
    assert "max_pixels" in str(info.value)


def test_pixel_limit_configurable(tmp_path):
    path = _save(tmp_path, Image.fromarray(RGB), "a.png")
    with pytest.raises(ImageLoadError, match="too large"):
        load_image(path, max_pixels=100)
    assert load_image(path, max_pixels=None).shape == (12, 20, 3)


def test_huge_bomb_beyond_pillow_limit(tmp_path):
    with pytest.raises(ImageLoadError, match="too large"):
        load_mask(_png_header(20000, 20000))


def test_truncated_file_names_the_file(tmp_path):
    noise = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for name in ("t.jpg", "t.png"):
        path = _save(tmp_path, Image.fromarray(noise), name)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        with pytest.raises(ImageLoadError) as info:
            load_image(path)
        message = str(info.value)
        assert str(path) in message and "truncated" in message
        assert "\n" not in message
        assert info.value.path == str(path)


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("hello\nworld\n")
    with pytest.raises(ImageLoadError, match="not an image") as info:
        load_image(path)
    assert str(info.value).startswith(f"cannot load image {path}: ")


def test_missing_empty_and_directory(tmp_path):
    with pytest.raises(ImageLoadError, match="file not found"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageLoadError, match="zero-size"):
        load_mask(tmp_path / "empty.png")
    with pytest.raises(ImageLoadError, match="directory"):
        load_image(tmp_path)
    with pytest.raises(ImageLoadError, match="zero-size"):
        load_image(Image.new("RGB", (0, 5)))


def test_bytes_and_stream_names():
    with pytest.raises(ImageLoadError, match="<bytes>"):
        load_image(b"not an image")
    with pytest.raises(ImageLoadError, match="<stream>"):
        load_image(io.BytesIO(b"not an image"))


def test_error_pickles():
    error = pickle.loads(pickle.dumps(ImageLoadError("a.png", "truncated file")))
    assert isinstance(error, ImageLoadError)
    assert str(error) == "cannot load image a.png: truncated file"


# ---------------------------------------------------------------- save_png


def test_save_png_roundtrip_and_atomic(tmp_path):
    target = tmp_path / "out" / "m.png"
    save_png(target, GRAY)
    np.testing.assert_array_equal(load_mask(target), GRAY)
    save_png(target, RGB)
    np.testing.assert_array_equal(load_image(target), RGB)
    save_png(target, GRAY > 100)
    np.testing.assert_array_equal(load_mask(target), np.where(GRAY > 100, 255, 0))
    assert sorted(p.name for p in target.parent.iterdir()) == ["m.png"]  # no temporaries left


def test_encode_image_options_replace_the_speed_defaults():
    smooth = np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (64, 1))
    fast, small = encode_image(smooth), encode_image(smooth, "PNG", optimize=True)
    assert len(small) < len(fast)  # zlib level 1 by default; optimize searches for the smallest
    for data in (fast, small):
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), smooth)  # PNG stays lossless
    photo = np.stack([smooth, smooth.T, 255 - smooth], axis=2)
    assert len(encode_image(photo, "JPEG", quality=50)) < len(encode_image(photo, "JPEG"))  # default 95


def test_save_png_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        save_png(tmp_path / "f.png", GRAY.astype(np.float32))
    with pytest.raises(ValueError, match="shape|H, W"):
        save_png(tmp_path / "f.png", np.zeros((4, 4, 2), np.uint8))
    assert not (tmp_path / "f.png").exists()


def test_pil_sources_are_checked_and_left_untouched(tmp_path):
    path = _save(tmp_path, Image.fromarray(RGB), "t.png")
    path.write_bytes(path.read_bytes()[:300])
    with Image.open(path) as lazy, pytest.raises(ImageLoadError, match="truncated"):
        load_image(lazy)
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = _save(tmp_path, Image.fromarray(RGB), "r.jpg", exif=exif)
    with Image.open(rotated) as im:
        assert load_image(im).shape == (20, 12, 3)
        assert im.size == (20, 12)  # the caller's image was not transposed in place
