"""``csnet.remove``: the same kind out as in, its options, and the blur composite; ``python -m csnet``."""
from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import csnet
from csnet.infer.compose import blur_background
from tests.infer.helpers import SIZE, gradient_image, model_file

pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def predictor():
    return csnet.Predictor(str(model_file()), size=SIZE, backend="torch", device="cpu")


def test_remove_returns_the_kind_it_was_given(predictor):
    array = gradient_image(40, 56)
    rgba = csnet.remove(array, predictor=predictor)
    assert rgba.shape == (40, 56, 4) and rgba.dtype == np.uint8
    pil = csnet.remove(Image.fromarray(array), predictor=predictor)
    assert isinstance(pil, Image.Image) and pil.mode == "RGBA" and pil.size == (56, 40)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG")
    png = csnet.remove(buffer.getvalue(), predictor=predictor)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(io.BytesIO(png)).mode == "RGBA"


def test_remove_options(predictor):
    array = gradient_image(40, 56)
    mask = csnet.remove(array, predictor=predictor, only_mask=True)
    assert mask.shape == (40, 56)
    green = csnet.remove(array, predictor=predictor, background="#00ff00", refine=None)
    raw = np.asarray(predictor.predict(array))
    assert green.shape == (40, 56, 3)
    transparent = np.nonzero(raw == 0)
    if transparent[0].size:
        assert (green[transparent] == (0, 255, 0)).all()
    assert csnet.remove(array, predictor=predictor, background="transparent").shape == (40, 56, 4)
    assert csnet.remove(array, predictor=predictor, blur=3).shape == (40, 56, 3)
    with pytest.raises(TypeError):
        csnet.remove("photo.jpg", predictor=predictor)
    with pytest.raises(ValueError, match="refine"):
        csnet.remove(array, predictor=predictor, refine="magic")


def test_refined_cutout_reaches_full_opacity(predictor):
    array = gradient_image(64, 64)
    plain = predictor.cutout(array)
    refined = predictor.cutout(array, refine="guided")
    assert refined.shape == plain.shape
    assert refined[:, :, 3].max() == 255 and refined[:, :, 3].min() == 0


def test_blur_keeps_the_subject_and_blurs_the_background():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    mask = np.zeros((48, 48), dtype=np.uint8)
    mask[16:32, 16:32] = 255
    out = blur_background(image, mask, radius=4)
    assert np.array_equal(out[16:32, 16:32], image[16:32, 16:32])
    assert out[:8, :8].astype(float).std() < 0.5 * image[:8, :8].astype(float).std()


def test_python_dash_m_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "csnet", "--version"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("csnet ")


def test_default_refine_falls_back_without_the_refine_extra(predictor, monkeypatch, caplog):
    """refine="auto" refines when OpenCV and pymatting are installed and, on a plain install, returns the
    network's own mask with one warning naming the extra; a mode asked for by name fails up front."""
    from csnet.infer import remove as remove_module
    from csnet.infer.refine import RefineError

    pytest.importorskip("pymatting")
    array = gradient_image(40, 56)
    raw = np.asarray(predictor.predict(array))
    refined = csnet.remove(array, predictor=predictor)
    assert np.array_equal(refined[:, :, 3], np.asarray(predictor.predict(array, refine="guided")))
    assert not np.array_equal(refined[:, :, 3], raw)

    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 fails, find_spec finds nothing
    remove_module._warn_unrefined.cache_clear()
    with caplog.at_level("WARNING", logger="csnet.infer.remove"):
        plain = csnet.remove(array, predictor=predictor)
        csnet.remove(array, predictor=predictor)
    assert np.array_equal(plain, predictor.cutout(array))
    assert caplog.text.count("csnet[refine]") == 1
    with pytest.raises(RefineError, match=r"refine='guided' needs cv2: pip install 'csnet\[refine\]'"):
        csnet.remove(array, predictor=predictor, refine="guided")
    monkeypatch.setitem(sys.modules, "pymatting", None)
    with pytest.raises(RefineError, match="needs pymatting"):
        csnet.remove(array, predictor=predictor, refine="matting")
    assert csnet.remove(array, predictor=predictor, refine=None).shape == (40, 56, 4)
