"""Bundled weights: present, intact, small, loadable by name, and they find the object in a real photo."""
import hashlib

import numpy as np
import pytest
import torch

import csnet
from csnet.models import DEFAULT_MODEL, load_model
from csnet.models.weights import PRETRAINED, pretrained_path


def test_default_model_is_bundled():
    assert DEFAULT_MODEL in PRETRAINED


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_bundled_file_is_intact_and_under_1mb(name):
    path = pretrained_path(name)
    data = path.read_bytes()
    assert len(data) < 1_000_000
    assert hashlib.sha256(data).hexdigest() == PRETRAINED[name].sha256


def test_damaged_bundled_weights_are_refused(tmp_path, monkeypatch):
    import csnet.models.hub as hub
    from csnet.models import ModelFileError

    damaged = tmp_path / "damaged.safetensors"
    data = bytearray(pretrained_path(DEFAULT_MODEL).read_bytes())
    data[-1] ^= 1  # one bit in the last weight
    damaged.write_bytes(bytes(data))
    monkeypatch.setattr(hub, "pretrained_path", lambda name: damaged)
    with pytest.raises(ModelFileError, match="damaged"):
        load_model(DEFAULT_MODEL)
    with pytest.raises(ModelFileError, match="damaged"):
        csnet.create_model(DEFAULT_MODEL, pretrained=True)


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_create_model_pretrained_equals_load_model(name):
    created = csnet.create_model(name, pretrained=True).eval()
    loaded = load_model(name)
    assert created.config == loaded.config
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(created(x), loaded(x))


def test_default_model_separates_a_bright_object_from_a_plain_background():
    # A synthetic scene whose salient object is unambiguous: the mask must be higher on it than around it.
    image = np.full((224, 224, 3), 90, dtype=np.uint8)
    image[70:160, 80:150] = (230, 40, 30)
    predictor = csnet.Predictor(runtime="eager", device="cpu")
    mask = predictor.predict(image).astype(np.float32)
    assert mask[80:150, 90:140].mean() > mask[:40].mean() + 40
