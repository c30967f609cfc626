"""Robust image and mask decoding, and atomic PNG writing.

Every reader in csnet (training data, evaluation, inference, the service) decodes through
:func:`load_image` / :func:`load_mask`, so that all of them agree on what a file means:

- images come back as ``(H, W, 3)`` uint8 RGB, masks as ``(H, W)`` uint8, whatever the file's
  mode (grayscale, RGBA, LA, palette with transparency, CMYK, 1-bit, 16-bit and float);
- EXIF orientation is applied, so ``H, W`` are the upright size a viewer shows;
- anything that cannot be decoded raises :class:`ImageLoadError`, one line naming the file and
  the problem, instead of whatever Pillow happened to raise (or merely warn about).
"""
from __future__ import annotations

import io
import logging
import os
import struct
import threading
import warnings
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, TiffTags, UnidentifiedImageError

from csnet.io.atomic import atomic_write_bytes

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_SIDE",
    "FORMATS",
    "ImageLoadError",
    "ImageSource",
    "load_image",
    "load_mask",
    "save_png",
]

#: Images above this many pixels are refused (a 100-megapixel RGB image is 300 MB decoded).
DEFAULT_MAX_PIXELS = 100_000_000
#: Images wider or taller than this are refused whatever their pixel count: resizing to the network input
#: and back costs memory in proportion to the longer side (224 x side float64 values), so a 1 px tall,
#: 10^6 px wide PNG (1 KB, one megapixel) cost 5.5 GB. 32768 is beyond any camera or phone panorama
#: within the pixel limit, and bounds those arrays to about 60 MB each.
DEFAULT_MAX_SIDE = 32_768
#: The formats decoded (Pillow names). Pillow knows many more, some of which run external programs (EPS
#: runs Ghostscript) or parse rarely exercised code; a saliency tool needs only these photo formats.
#: Multi-picture JPEGs (MPO, from phones' and stereo cameras) open through the JPEG decoder.
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, Image.Image]

logger = logging.getLogger(__name__)

# Pillow warns while opening (above MAX_IMAGE_PIXELS, before csnet applies its own configurable limit; about
# damaged metadata it skipped): those warnings are caught around Image.open, so the limit and the errors
# here are what users see. The lock keeps threads from interleaving warnings.catch_warnings, which saves
# and restores global state; it covers the header parse only, never the pixel decode.
_WARNINGS_LOCK = threading.Lock()

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class ImageLoadError(Exception):
    """An image or mask that cannot be used: unreadable, truncated, not an image, too large, empty.

    ``str(error)`` is one line, ``cannot load image <path>: <problem>``.
    """

    def __init__(self, path: str, problem: str) -> None:
        # Both go to Exception.__init__ so the error pickles (DataLoader workers send it back).
        super().__init__(path, problem)
        self.path = str(path)
        self.problem = " ".join(str(problem).split())  # one line, whatever the cause said

    def __str__(self) -> str:
        return f"cannot load image {self.path}: {self.problem}"


def load_image(source: ImageSource, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
               exif: bool = True, max_side: int | None = DEFAULT_MAX_SIDE) -> np.ndarray:
    """Decode an image to RGB.

    Args:
        source: a path, the encoded bytes, a binary file object, or a PIL image.
        max_pixels: refuse images with more pixels than this (``None``: no limit).
        exif: apply the EXIF orientation tag (``ImageOps.exif_transpose``).
        max_side: refuse images wider or taller than this (``None``: no limit), see :data:`DEFAULT_MAX_SIDE`.

    Returns:
        ``(H, W, 3)`` uint8 RGB. Alpha is dropped (not composited); 16-bit and float images are
        scaled to 8 bits as described in :func:`_high_bit_to_uint8`.

    Raises:
        ImageLoadError: the source cannot be decoded, is not one of :data:`FORMATS`, is empty, or is
            larger than ``max_pixels`` or ``max_side``.
    """
    im, name = _open(source, max_pixels=max_pixels, exif=exif, max_side=max_side)
    try:
        if im.mode in _SIXTEEN_BIT_MODES or im.mode == "F":
            gray = _high_bit_to_uint8(np.asarray(im))
            return np.repeat(gray[:, :, None], 3, axis=2)
        if im.mode in ("P", "PA"):
            # Through RGBA so palette transparency is honoured by Pillow, then dropped here.
            im = im.convert("RGBA")
        if im.mode != "RGB":
            im = im.convert("RGB")
        return np.array(im, dtype=np.uint8)
    except (ValueError, OSError) as error:  # a mode Pillow cannot convert (e.g. exotic TIFFs)
        raise ImageLoadError(name, f"unsupported image mode {im.mode!r} ({error})") from error


def load_mask(source: ImageSource, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
              exif: bool = True, max_side: int | None = DEFAULT_MAX_SIDE) -> np.ndarray:
    """Decode a mask (a ground truth or a saliency map) to one 8-bit channel.

    The values are the file's gray levels, not thresholded: colour masks are converted to luma
    (ITU-R 601, Pillow's ``convert("L")``), alpha is dropped, 1-bit masks become 0/255 and 16-bit
    or float masks are scaled as in :func:`_high_bit_to_uint8`. EXIF orientation is applied as for
    images, so a mask stays aligned with its image.

    Returns:
        ``(H, W)`` uint8.

    Raises:
        ImageLoadError: as :func:`load_image`.
    """
    im, name = _open(source, max_pixels=max_pixels, exif=exif, max_side=max_side)
    try:
        if im.mode in _SIXTEEN_BIT_MODES or im.mode == "F":
            return _high_bit_to_uint8(np.asarray(im))
        if im.mode in ("P", "PA"):
            im = im.convert("RGBA")
        if im.mode not in ("L", "1", "LA", "La", "RGB", "RGBA"):
            im = im.convert("RGB")  # CMYK, YCbCr, ...: to RGB first, then luma below
        if im.mode != "L":
            im = im.convert("L")
        return np.array(im, dtype=np.uint8)
    except (ValueError, OSError) as error:
        raise ImageLoadError(name, f"unsupported image mode {im.mode!r} ({error})") from error


def encode_image(array: np.ndarray, image_format: str = "PNG", **options) -> bytes:
    """``array`` (uint8 gray, RGB or RGBA) encoded in memory as ``image_format`` (a Pillow format name).

    The defaults are tuned for speed, since encoding is the largest cost after the model when serving
    masks on a 2-core CPU (benchmarks/RESULTS.md): PNGs use zlib level 1, JPEGs quality 95. ``options``
    are Pillow's save options for the format and replace those defaults (e.g. ``quality=85,
    optimize=True`` where size matters more than time).
    """
    defaults: dict = {"PNG": {"compress_level": 1}, "JPEG": {"quality": 95}}.get(image_format, {})
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format=image_format, **{**defaults, **options})
    return buffer.getvalue()


def save_png(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as a PNG, atomically (a reader never sees a half-written file).

    Args:
        path: destination; parent folders are created.
        array: ``(H, W)`` or ``(H, W, 1)`` gray, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA, uint8;
            a bool mask is written as 0/255.
    """
    array = np.asarray(array)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    if array.dtype != np.uint8:
        raise ValueError(f"save_png needs uint8 (or bool) data, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise ValueError(f"save_png needs (H, W), (H, W, 3) or (H, W, 4), got {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"save_png got an empty image of shape {array.shape}")
    atomic_write_bytes(path, encode_image(array))


def _source_name(source: ImageSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    if isinstance(source, Image.Image):
        return getattr(source, "filename", "") or "<PIL image>"
    name = getattr(source, "name", None)
    return str(name) if isinstance(name, (str, os.PathLike)) else "<stream>"


def _read_bytes(source: ImageSource, name: str) -> bytes:
    """The encoded bytes of a path, buffer or file object; OS errors become ImageLoadError."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    try:
        if isinstance(source, (str, os.PathLike)):
            return Path(source).read_bytes()
        data = source.read()
    except FileNotFoundError as error:
        raise ImageLoadError(name, "file not found") from error
    except IsADirectoryError as error:
        raise ImageLoadError(name, "is a directory, not a file") from error
    except PermissionError as error:
        raise ImageLoadError(name, "unreadable (permission denied)") from error
    except OSError as error:
        raise ImageLoadError(name, f"unreadable ({error.strerror or error})") from error
    if not isinstance(data, (bytes, bytearray)):
        raise ImageLoadError(name, "file object did not return bytes (open it in binary mode)")
    return bytes(data)


def _open(source: ImageSource, *, max_pixels: int | None, exif: bool,
          max_side: int | None = DEFAULT_MAX_SIDE) -> tuple[Image.Image, str]:
    """Open, check the size before decoding, decode fully, and apply EXIF orientation."""
    name = _source_name(source)
    if isinstance(source, Image.Image):
        im = source
    else:
        data = _read_bytes(source, name)
        if not data:
            raise ImageLoadError(name, "zero-size file (0 bytes)")
        try:
            with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                im = Image.open(io.BytesIO(data), formats=FORMATS)
                _read_metadata(im)
            # Pillow warns about damaged metadata it skipped ("Corrupt EXIF data", "Tag data larger than
            # file"); the pixels are still decoded or refused below, so the warning is a debug note, not
            # noise on the user's terminal.
            for warning in caught:
                if not issubclass(warning.category, Image.DecompressionBombWarning):
                    logger.debug("%s: %s", name, warning.message)
        except Image.DecompressionBombError as error:
            raise ImageLoadError(
                name, f"too large ({error}); limits above that also need "
                      "PIL.Image.MAX_IMAGE_PIXELS raised") from error
        except UnidentifiedImageError as error:
            raise ImageLoadError(name, _unidentified_problem(data)) from error
        except MemoryError:
            raise
        except Exception as error:  # noqa: BLE001 - Pillow raises many types for broken headers
            raise ImageLoadError(name, _decode_problem(error, "header")) from error

    _check_size(im.size, name, max_pixels, max_side)  # from the header: nothing decoded yet
    try:
        im.load()
        if exif and im is source:
            im = ImageOps.exif_transpose(im)  # a copy: the caller's image stays as it was
        elif exif:
            ImageOps.exif_transpose(im, in_place=True)
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 - OSError, EOFError, zlib.error, SyntaxError, ...
        raise ImageLoadError(name, _decode_problem(error, "image data")) from error
    return im, name


def _read_metadata(im: Image.Image) -> None:
    """Parse a TIFF's EXIF and its EXIF/GPS sub-IFDs now, while warnings are caught: Pillow caches them, so
    the pixel decode (TIFF's ``load_end`` reads them again) warns about nothing. TIFF only: for PNG,
    ``getexif`` decodes the whole image, which must wait for the size check."""
    if im.format == "TIFF":
        exif = im.getexif()
        for key in TiffTags.TAGS_V2_GROUPS:
            if key in exif:
                exif.get_ifd(key)


_SIGNATURES = {
    b"%!PS": "PostScript/EPS", b"\xc5\xd0\xd3\xc6": "EPS", b"%PDF": "PDF", b"\x00\x00\x01\x00": "ICO",
    b"8BPS": "PSD", b"DDS ": "DDS", b"icns": "ICNS", b"\x00\x00\x00\x0cjP": "JPEG 2000", b"qoif": "QOI",
}
_TIFF_SAMPLE_FORMATS = {1: "unsigned integer", 2: "signed integer", 3: "floating-point"}


def _unidentified_problem(data: bytes) -> str:
    """Why Pillow could not open ``data``: a format csnet does not decode, a TIFF layout Pillow cannot
    convert (named from its header, so the user knows what to re-save it as), or not an image at all."""
    supported = ", ".join(FORMATS)
    for signature, kind in _SIGNATURES.items():
        if data.startswith(signature):
            return f"{kind} files are not decoded (supported formats: {supported})"
    layout = _tiff_layout(data) if data[:4] in (b"II*\x00", b"MM\x00*") else None
    if layout is not None:
        samples, bits, sample_format = layout
        kind = _TIFF_SAMPLE_FORMATS.get(sample_format, f"sample format {sample_format}")
        return (f"unsupported TIFF layout: {samples} samples per pixel of {bits}-bit {kind}; save it as 8- or "
                f"16-bit grayscale/RGB(A) or 32-bit float grayscale")
    return f"not an image in a supported format ({supported}), or corrupt"


def _tiff_layout(data: bytes) -> tuple[int, int, int] | None:
    """``(samples per pixel, bits per sample, sample format)`` from a TIFF's first IFD, or None if unreadable.

    Only the first value of BitsPerSample / SampleFormat is read (inline when it fits, else at its offset).
    """
    try:
        order = "<" if data[:2] == b"II" else ">"
        (offset,) = struct.unpack_from(order + "I", data, 4)
        (count,) = struct.unpack_from(order + "H", data, offset)
        entries = {}
        for index in range(min(count, 256)):
            tag, kind, number, value = struct.unpack_from(order + "HHI4s", data, offset + 2 + 12 * index)
            entries[tag] = (kind, number, value)

        def first(tag: int) -> int:
            if tag not in entries:
                return 1
            kind, number, value = entries[tag]
            size = 2 if kind == 3 else 4
            if number * size > 4:  # stored elsewhere: value is the offset
                value = data[struct.unpack(order + "I", value)[0]:][:size]
            return struct.unpack_from(order + ("H" if kind == 3 else "I"), value)[0]

        return first(277), first(258), first(339)
    except struct.error:
        return None


def _decode_problem(error: Exception, part: str) -> str:
    """Name what Pillow's exception means; its types vary by format and by where data ran out."""
    if isinstance(error, EOFError) or "truncated" in str(error).lower():
        return f"truncated file ({error})"
    return f"corrupt {part} ({type(error).__name__}: {error})"


def _check_size(size: tuple[int, int], name: str, max_pixels: int | None, max_side: int | None = None) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageLoadError(name, f"zero-size image ({width}x{height})")
    if max_side is not None and max(width, height) > max_side:
        raise ImageLoadError(
            name, f"too large: {width}x{height} has a side over the limit of {max_side} pixels (max_side)")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageLoadError(
            name, f"too large: {width}x{height} = {width * height / 1e6:.1f} megapixels exceeds "
                  f"the limit of {max_pixels / 1e6:.1f} megapixels (max_pixels)")


def _high_bit_to_uint8(values: np.ndarray) -> np.ndarray:
    """Scale a 16-bit, 32-bit integer or float single-channel image to uint8.

    The file's bit depth says little about the range actually used (8-bit masks are often saved
    as 16-bit PNGs, float TIFFs usually hold [0, 1]), so the range decides:

    - integers: max <= 255 -> kept as 8-bit values; within [0, 65535] -> divided by 257 (so
      65535 -> 255); otherwise (negative or larger) -> [min, max] stretched to [0, 255];
    - floats (NaN/inf -> 0): within [0, 1] -> times 255; within [0, 255] -> kept; otherwise
      stretched from [min, max].

    Args:
        values: ``(H, W)`` integer or float array.

    Returns:
        ``(H, W)`` uint8.
    """
    # One float32 working copy, changed in place: the decode's peak memory stays a small multiple of its
    # pixel count (SECURITY.md); float32 is exact for 16-bit values and far finer than the 8-bit result.
    if np.issubdtype(values.dtype, np.floating):
        x = values.astype(np.float32)
        np.nan_to_num(x, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(x.min()), float(x.max())
        if lo >= 0.0 and hi <= 1.0:
            x *= 255.0
        elif not (lo >= 0.0 and hi <= 255.0):
            _stretch(x, lo, hi)
    else:
        lo, hi = int(values.min()), int(values.max())
        if lo >= 0 and hi <= 255:
            return values.astype(np.uint8)
        x = values.astype(np.float32)
        if lo >= 0 and hi <= 65535:
            x /= 257.0
        else:
            _stretch(x, lo, hi)
    np.rint(x, out=x)
    np.clip(x, 0, 255, out=x)
    return x.astype(np.uint8)


def _stretch(x: np.ndarray, lo: float, hi: float) -> None:
    """Map ``[lo, hi]`` onto ``[0, 255]`` in place (all zeros when the image is flat)."""
    if hi > lo:
        x -= lo
        x *= 255.0 / (hi - lo)
    else:
        x[...] = 0.0
