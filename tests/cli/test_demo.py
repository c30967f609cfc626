"""`csnet demo`: a contact sheet from scikit-image's bundled photos, downloading nothing."""
import socket

import numpy as np
import pytest
from PIL import Image

from csnet.cli.main import main
from tests.infer.helpers import model_file

pytestmark = pytest.mark.usefixtures("one_torch_thread")
pytest.importorskip("skimage")


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the demo must not use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_demo_writes_a_contact_sheet(tmp_path, capsys, no_network):
    out = tmp_path / "demo.png"
    assert main(["demo", "-o", str(out), "--model", str(model_file()), "--backend", "torch", "--size", "64",
                 "--images", "astronaut,coffee", "--row-height", "64"]) == 0
    assert "wrote" in capsys.readouterr().out
    sheet = np.asarray(Image.open(out))
    assert sheet.ndim == 3 and sheet.shape[2] == 3
    assert 2 * 64 < sheet.shape[0] < 2 * 64 + 150  # two rows under a title
    assert sheet.shape[1] > 3 * 64  # image | mask | cutout
    assert sheet.std() > 20


def test_demo_default_runs_the_bundled_model_offline(tmp_path, capsys, no_network):
    from csnet.models import DEFAULT_MODEL

    out = tmp_path / "csnet-demo.png"
    assert main(["demo", "-o", str(out), "--backend", "torch", "--size", "64", "--images", "chelsea",
                 "--row-height", "32"]) == 0
    assert f"model {DEFAULT_MODEL}" in capsys.readouterr().out
    assert np.asarray(Image.open(out)).std() > 20


def test_demo_unknown_sample_is_one_line(capsys):
    assert main(["demo", "--images", "unicorn", "--model", str(model_file())]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unicorn" in err
