"""Peak memory of one decode is bounded by a fixed multiple of its pixel count (SECURITY.md states it).

Each decode runs in a fresh interpreter that reads the file, resets the kernel's peak-RSS mark (Linux
``/proc/self/clear_refs``), decodes with ``load_image`` / ``load_mask`` and reads the new peak: Pillow's
own buffers are outside tracemalloc's view, the peak RSS sees everything. 3 megapixels make the bytes per
pixel stand well above the allocator's noise.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

#: Bytes of extra peak memory per pixel a decode may take (SECURITY.md), on top of the encoded bytes.
MAX_BYTES_PER_PIXEL = 24
WIDTH, HEIGHT = 2000, 1500

_MEASURE = """
import sys
from csnet.io.images import load_image, load_mask

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

data = open(sys.argv[1], "rb").read()
decode = load_mask if sys.argv[2] == "mask" else load_image
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak RSS (VmHWM) starts again from the current RSS
before = status("VmRSS:")
out = decode(data)
print((status("VmHWM:") - before) / (out.shape[0] * out.shape[1]))
"""


def _write(kind: str, path: Path) -> Path:
    if kind == "rgb_png":
        Image.fromarray(np.zeros((HEIGHT, WIDTH, 3), np.uint8)).save(path, compress_level=1)
    elif kind == "rgba_png":
        Image.fromarray(np.zeros((HEIGHT, WIDTH, 4), np.uint8)).save(path, compress_level=1)
    elif kind == "gray16_png":
        Image.fromarray(np.full((HEIGHT, WIDTH), 1000, np.uint16)).save(path, compress_level=1)
    elif kind == "float_tiff":
        Image.fromarray(np.full((HEIGHT, WIDTH), 0.5, np.float32)).save(path)
    elif kind == "rotated_jpeg":  # EXIF orientation 6: the transpose is one more full-size copy
        exif = Image.Exif()
        exif[0x0112] = 6
        Image.fromarray(np.zeros((HEIGHT, WIDTH, 3), np.uint8)).save(path, quality=75, exif=exif)
    return path


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="peak RSS reset needs Linux /proc")
@pytest.mark.parametrize("kind,suffix", [("rgb_png", ".png"), ("rgba_png", ".png"), ("gray16_png", ".png"),
                                         ("float_tiff", ".tif"), ("rotated_jpeg", ".jpg")])
@pytest.mark.parametrize("reader", ["image", "mask"])
def test_decode_peak_memory_is_bounded_per_pixel(kind: str, suffix: str, reader: str, tmp_path: Path) -> None:
    path = _write(kind, tmp_path / f"{kind}{suffix}")
    result = subprocess.run([sys.executable, "-c", _MEASURE, str(path), reader], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    per_pixel = float(result.stdout.strip())
    assert per_pixel <= MAX_BYTES_PER_PIXEL, f"{kind} {reader}: {per_pixel:.1f} bytes per pixel"
