"""``csnet evaluate`` on small temporary datasets, through ``csnet.cli.main.main``."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from csnet.cli.main import main
from csnet.metrics import SCORE_KEYS, SODEvaluator

KEYS = ["dataset"] + list(SCORE_KEYS)
H, W = 36, 52


def _mask(i: int) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    cy, cx, r = 12 + i % 12, 15 + 3 * i % 25, 6 + i % 7
    return (((yy - cy) ** 2 + (xx - cx) ** 2) < r * r).astype(np.uint8) * 255


def _soft(mask: np.ndarray, i: int) -> np.ndarray:
    rng = np.random.default_rng(i)
    x = 0.7 * mask + rng.normal(30, 25, mask.shape)
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture
def maps(tmp_path):
    """pred/ and masks/ folders with 5 paired PNG maps; returns (pred_dir, gt_dir, expected scores)."""
    pred_dir, gt_dir = tmp_path / "run" / "pred", tmp_path / "DS" / "masks"
    ev = SODEvaluator()
    for i in range(5):
        gt, pred = _mask(i), _soft(_mask(i), i)
        _save(gt_dir / f"img{i}.png", gt)
        _save(pred_dir / f"img{i}.png", pred)
        ev.step(pred, gt)
    return pred_dir, gt_dir, ev.get_results()


def test_scores_maps_and_writes_reports(maps, tmp_path, capsys):
    pred_dir, gt_dir, expected = maps
    out_json, out_csv, plots = tmp_path / "o" / "s.json", tmp_path / "o" / "s.csv", tmp_path / "plots"
    argv = ["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir),
            "--json", str(out_json), "--csv", str(out_csv)]
    has_mpl = _has_matplotlib()
    if has_mpl:
        argv += ["--plot", str(plots)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "maxF" in printed and "DS" in printed  # table; the dataset is named after masks/'s parent

    rows = json.loads(out_json.read_text())
    assert isinstance(rows, list) and len(rows) == 1 and list(rows[0]) == KEYS
    assert rows[0]["dataset"] == "DS" and rows[0]["n"] == 5
    for key in SCORE_KEYS:
        assert rows[0][key] == pytest.approx(expected[key], abs=1e-12), key

    with open(out_csv, newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == KEYS and len(table) == 1
    assert float(table[0]["maxF"]) == pytest.approx(expected["maxF"], abs=1e-12)
    assert not list((tmp_path / "o").glob(".*"))  # no temporary files left by the atomic writes

    if has_mpl:
        for name in ("pr_curves.png", "f_curves.png"):
            with Image.open(plots / name) as im:
                assert im.format == "PNG" and im.size[0] > 100


def _has_matplotlib() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def test_name_option(maps, tmp_path):
    pred_dir, gt_dir, _ = maps
    out = tmp_path / "s.json"
    assert main(["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir), "--name", "mine",
                 "--json", str(out)]) == 0
    assert json.loads(out.read_text())[0]["dataset"] == "mine"


def test_unpaired_files_fail_unless_skipped(maps, tmp_path, capsys):
    pred_dir, gt_dir, _ = maps
    _save(pred_dir / "orphan.png", _mask(9))
    (gt_dir / "img0.png").unlink()
    assert main(["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir)]) == 1
    err = capsys.readouterr().err
    assert "orphan.png" in err and "img0.png" in err and "--skip-bad" in err
    assert len(err.strip().splitlines()) == 1  # one line, no traceback

    out = tmp_path / "s.json"
    assert main(["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir), "--skip-bad", "--json", str(out)]) == 0
    assert "warning" in capsys.readouterr().err
    assert json.loads(out.read_text())[0]["n"] == 4


def test_unreadable_and_mismatched_files(maps, tmp_path, capsys):
    pred_dir, gt_dir, _ = maps
    (pred_dir / "img1.png").write_bytes(b"not a png")
    _save(pred_dir / "img2.png", np.zeros((H + 1, W), np.uint8))
    assert main(["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir)]) == 1
    assert "img1.png" in capsys.readouterr().err

    out = tmp_path / "s.json"
    assert main(["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir), "--skip-bad", "--json", str(out)]) == 0
    err = capsys.readouterr().err
    assert "img1.png" in err and "img2.png" in err
    assert json.loads(out.read_text())[0]["n"] == 3


def test_everything_skipped_is_an_error(tmp_path, capsys):
    _save(tmp_path / "gt" / "a.png", _mask(0))
    _save(tmp_path / "pred" / "b.png", _mask(0))
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--skip-bad"]) == 1
    assert "no image/mask pairs" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    ([], "either --pred"),
    (["--pred", "x"], "--gt"),
    (["--pred", "x", "--gt", "y", "--data", "z"], "either --pred"),
    (["--pred", "x", "--gt", "y", "--model", "m"], "--model goes with --data"),
    (["--pred", "missing", "--gt", "y"], "not found"),
    (["--data", "missing"], "not found"),
])
def test_argument_errors(argv, message, capsys):
    assert main(["evaluate", *argv]) == 1
    assert message in capsys.readouterr().err


def test_plot_without_matplotlib_names_the_extra(maps, tmp_path, monkeypatch, capsys):
    import importlib.util

    pred_dir, gt_dir, _ = maps
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    assert main(["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir), "--plot", str(tmp_path / "p")]) == 1
    assert "csnet[plot]" in capsys.readouterr().err


def test_plot_curves_without_matplotlib_raises_import_error(monkeypatch, tmp_path):
    import sys

    from csnet.metrics.plot import plot_curves

    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"csnet\[plot\]"):
        plot_curves({}, tmp_path)


# --- --data: a model predicts through the test protocol ---------------------------------------------------


class _FakeSaliency(torch.nn.Module):
    """Contract of csnet.models.load_model: B x 3 x H x W normalized images -> B x 1 x H x W logits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 4.0 * x.mean(dim=1, keepdim=True)


def _dataset(root: Path, image_dir: str, mask_dir: str, n: int = 3) -> None:
    for i in range(n):
        mask = _mask(i)
        image = np.stack([mask, 255 - mask, _soft(mask, i)], axis=-1).astype(np.uint8)
        _save(root / image_dir / f"{i:03d}.jpg", image)
        _save(root / mask_dir / f"{i:03d}.png", mask)


@pytest.fixture
def fake_model(monkeypatch):
    import csnet.models

    loaded = []

    def load_model(name, device="cpu"):
        loaded.append((name, device))
        return _FakeSaliency().eval()

    monkeypatch.setattr(csnet.models, "load_model", load_model)
    return loaded


def _expected_with_model(root: Path, image_dir: str, mask_dir: str, size: int = 224) -> dict:
    from csnet.infer.protocol import postprocess, preprocess

    ev = SODEvaluator()
    for image_path in sorted((root / image_dir).iterdir()):
        image = np.asarray(Image.open(image_path).convert("RGB"))
        gt = np.asarray(Image.open(root / mask_dir / f"{image_path.stem}.png").convert("L"))
        with torch.inference_mode():
            ev.step(postprocess(_FakeSaliency()(preprocess(image, size)), gt.shape), gt)
    return ev.get_results()


def test_data_mode_predicts_and_scores_several_layouts(tmp_path, fake_model):
    import csnet.models

    layouts = [("images", "masks"), ("Imgs", "GT"), ("im", "gt"), ("Image", "Mask"), ("images", "GT")]
    roots = []
    for i, (image_dir, mask_dir) in enumerate(layouts):
        root = tmp_path / f"set{i}"
        _dataset(root, image_dir, mask_dir)
        roots.append(root)
    out = tmp_path / "s.json"
    argv = ["evaluate", "--data", ",".join(map(str, roots[:3])), "--data", ",".join(map(str, roots[3:])),
            "--batch-size", "2", "--json", str(out)]
    assert main(argv) == 0
    assert fake_model == [(csnet.models.DEFAULT_MODEL, "cpu")]  # loaded once, the default model
    rows = json.loads(out.read_text())
    assert [r["dataset"] for r in rows] == [f"set{i}" for i in range(5)]
    assert all(list(r) == KEYS and r["n"] == 3 for r in rows)
    expected = _expected_with_model(roots[1], "Imgs", "GT")
    for key in SCORE_KEYS:
        assert rows[1][key] == pytest.approx(expected[key], abs=1e-12), key


def test_data_mode_at_another_input_size(tmp_path, fake_model):
    _dataset(tmp_path / "set", "images", "masks")
    out = tmp_path / "s.json"
    assert main(["evaluate", "--data", str(tmp_path / "set"), "--size", "64", "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())
    expected = _expected_with_model(tmp_path / "set", "images", "masks", size=64)
    assert expected != _expected_with_model(tmp_path / "set", "images", "masks")  # the size matters here
    for key in SCORE_KEYS:
        assert row[key] == pytest.approx(expected[key], abs=1e-12), key
    assert main(["evaluate", "--data", str(tmp_path / "set"), "--size", "8"]) == 1


def test_data_mode_named_model_and_bad_layout(tmp_path, fake_model, capsys):
    _dataset(tmp_path / "ok", "images", "masks", n=2)
    assert main(["evaluate", "--model", "some.safetensors", "--data", str(tmp_path / "ok")]) == 0
    assert fake_model[-1][0] == "some.safetensors"
    (tmp_path / "odd" / "pictures").mkdir(parents=True)
    assert main(["evaluate", "--data", str(tmp_path / "odd")]) == 1
    err = capsys.readouterr().err
    assert "no dataset layout recognised" in err and "pictures" in err  # names the folders it found


def test_data_mode_duts_layout_and_list_file(tmp_path, fake_model):
    # csnet.data's layouts: the DUTS folders, and a list file of "image mask" lines named after its folder.
    _dataset(tmp_path / "DUTS-TE", "DUTS-TE-Image", "DUTS-TE-Mask", n=2)
    _dataset(tmp_path / "listed", "pics", "gts", n=3)
    (tmp_path / "listed" / "test.lst").write_text("# image mask\npics/000.jpg gts/000.png\npics/002.jpg gts/002.png\n")
    out = tmp_path / "s.json"
    assert main(["evaluate", "--data", f"{tmp_path / 'DUTS-TE'},{tmp_path / 'listed' / 'test.lst'}",
                 "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [(r["dataset"], r["n"]) for r in rows] == [("DUTS-TE", 2), ("listed", 2)]


def test_data_mode_unpaired_image(tmp_path, fake_model, capsys):
    _dataset(tmp_path / "ds", "images", "masks", n=3)
    (tmp_path / "ds" / "masks" / "001.png").unlink()
    assert main(["evaluate", "--data", str(tmp_path / "ds")]) == 1
    assert "001.jpg" in capsys.readouterr().err
    out = tmp_path / "s.json"
    assert main(["evaluate", "--data", str(tmp_path / "ds"), "--skip-bad", "--json", str(out)]) == 0
    assert json.loads(out.read_text())[0]["n"] == 2


def test_data_mode_with_a_real_csnet_file(tmp_path, one_thread):
    # The real model contract end to end: a randomly initialized CSNet saved and loaded by file.
    models = pytest.importorskip("csnet.models")
    if not hasattr(models, "save_model") or "csnet_l_x1" not in models.list_models():
        pytest.skip("csnet.models has no csnet_l_x1 / save_model yet")
    torch.manual_seed(0)
    path = tmp_path / "m.safetensors"
    models.save_model(models.create_model("csnet_l_x1"), path)
    _dataset(tmp_path / "ds", "images", "masks", n=1)
    out = tmp_path / "s.json"
    assert main(["evaluate", "--model", str(path), "--data", str(tmp_path / "ds"), "--json", str(out)]) == 0
    row = json.loads(out.read_text())[0]
    assert row["n"] == 1 and all(np.isfinite(row[k]) for k in SCORE_KEYS)


def test_data_mode_unknown_model_is_a_user_error(tmp_path, capsys):
    _dataset(tmp_path / "ds", "images", "masks", n=1)
    assert main(["evaluate", "--model", str(tmp_path / "nope.safetensors"), "--data", str(tmp_path / "ds")]) == 1
    err = capsys.readouterr().err
    assert "nope.safetensors" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("runtime", ["auto", "onnx-file"])
def test_evaluate_model_equals_predict_then_evaluate_pred(tmp_path, one_thread, runtime):
    # one path for both: the predictor's runtime, its resizes and its uint8 maps
    from tests.infer.helpers import model_file, onnx_file

    if runtime == "onnx-file":
        pytest.importorskip("onnxruntime")
    model = str(onnx_file() if runtime == "onnx-file" else model_file())
    _dataset(tmp_path / "ds", "images", "masks", n=3)
    direct, scored = tmp_path / "direct.json", tmp_path / "scored.json"
    assert main(["evaluate", "--model", model, "--data", str(tmp_path / "ds"), "--size", "64",
                 "--json", str(direct)]) == 0
    assert main(["predict", str(tmp_path / "ds" / "images"), "-o", str(tmp_path / "maps"), "--model", model,
                 "--size", "64"]) == 0
    assert main(["evaluate", "--pred", str(tmp_path / "maps"), "--gt", str(tmp_path / "ds" / "masks"),
                 "--json", str(scored)]) == 0
    (got,), (want,) = json.loads(direct.read_text()), json.loads(scored.read_text())
    assert got["n"] == want["n"] == 3
    for key in SCORE_KEYS:
        assert got[key] == pytest.approx(want[key], abs=1e-4), key
