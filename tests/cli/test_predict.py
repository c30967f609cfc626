"""`csnet predict`: inputs (files, folders, globs, stdin), outputs, modes, failures, skipping, videos."""
import importlib.util
import io
import shutil
import sys
import time
import types

import numpy as np
import pytest
from PIL import Image

from csnet.cli.main import main
from tests.infer.helpers import SIZE, gradient_image, model_file, onnx_file, photos

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def predict(*args, model=None):
    """Run `csnet predict` in-process with the test model on the torch backend at the fast size."""
    return main(["predict", *map(str, args), "--model", str(model or model_file()), "--backend",
                 "torch" if model is None else "auto", "--size", str(SIZE), "-q"])


def save(path, array, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


@pytest.fixture
def tree(tmp_path):
    """in/a.png, in/sub/b.jpg (real photo), in/sub/deeper/c.webp, in/.hidden/x.png, in/notes.txt."""
    root = tmp_path / "in"
    save(root / "a.png", gradient_image(40, 60))
    (root / "sub").mkdir(parents=True)
    shutil.copy(photos(1)[0], root / "sub" / "b.jpg")
    save(root / "sub" / "deeper" / "c.webp", gradient_image(31, 17))
    save(root / ".hidden" / "x.png", gradient_image(8, 8))
    (root / "notes.txt").write_text("not an image")
    return root


def test_folder_keeps_relative_paths_and_sizes(tree, tmp_path, capsys):
    out = tmp_path / "out"
    assert predict(tree, "-o", out, "--workers", "3") == 0
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["a.png", "sub/b.png", "sub/deeper/c.png"]
    for rel, source in [("a.png", "a.png"), ("sub/b.png", "sub/b.jpg"), ("sub/deeper/c.png", "sub/deeper/c.webp")]:
        mask = Image.open(out / rel)
        assert mask.mode == "L" and mask.size == Image.open(tree / source).size
    assert np.asarray(Image.open(out / "sub/b.png")).std() > 5


def test_bad_file_is_one_line_and_the_others_continue(tree, tmp_path, capsys):
    (tree / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out = tmp_path / "out"
    assert main(["predict", str(tree), "-o", str(out), "--model", str(model_file()), "--backend", "torch",
                 "--size", str(SIZE)]) == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if "error" in line]
    assert len(errors) == 1 and "broken.jpg" in errors[0]
    assert (out / "a.png").exists() and (out / "sub" / "b.png").exists() and not (out / "broken.png").exists()
    assert "3 done, 1 failed" in captured.out and "images/s" in captured.out


def test_globs_files_and_single_file_output(tree, tmp_path):
    out = tmp_path / "globbed"
    assert predict(str(tree / "**" / "*.webp"), "-o", out) == 0
    assert [p.relative_to(out).as_posix() for p in out.rglob("*.png")] == ["sub/deeper/c.png"]
    assert predict(tree / "a.png", "-o", tmp_path / "single" / "mask.png") == 0
    assert Image.open(tmp_path / "single" / "mask.png").size == (60, 40)
    assert predict(tree / "a.png", tree / "sub" / "b.jpg", "-o", tmp_path / "two") == 0
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["a.png", "b.png"]


def test_stdin_to_stdout(tree, monkeypatch, capsysbinary):
    data = (tree / "sub" / "b.jpg").read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert predict("-", "--cutout") == 0
    cutout = Image.open(io.BytesIO(capsysbinary.readouterr().out))
    assert cutout.mode == "RGBA" and cutout.size == Image.open(tree / "sub" / "b.jpg").size


def test_modes(tree, tmp_path):
    image = np.asarray(Image.open(tree / "a.png"))
    assert predict(tree / "a.png", "-o", tmp_path / "mask.png") == 0
    mask = np.asarray(Image.open(tmp_path / "mask.png"))
    assert predict(tree / "a.png", "-o", tmp_path / "cut", "--cutout") == 0
    cutout = np.asarray(Image.open(tmp_path / "cut" / "a.png"))
    assert cutout.shape == (40, 60, 4) and np.array_equal(cutout[:, :, 3], mask)
    assert np.array_equal(cutout[:, :, :3], image)
    assert predict(tree / "a.png", "-o", tmp_path / "bg", "--background", "#00ff00") == 0
    background = np.asarray(Image.open(tmp_path / "bg" / "a.png"))
    assert background.shape == (40, 60, 3)
    clear = mask == 0
    if clear.any():
        assert np.all(background[clear] == [0, 255, 0])
    assert predict(tree / "a.png", "-o", tmp_path / "bgimg", "--background", tree / "sub" / "b.jpg") == 0
    assert Image.open(tmp_path / "bgimg" / "a.png").size == (60, 40)
    assert predict(tree / "a.png", "-o", tmp_path / "ov", "--overlay") == 0
    assert np.asarray(Image.open(tmp_path / "ov" / "a.png")).shape == (40, 60, 3)
    assert predict(tree / "a.png", "-o", tmp_path / "bin.png", "--threshold", "0.5") == 0
    assert set(np.unique(np.asarray(Image.open(tmp_path / "bin.png")))) <= {0, 255}


def test_image_kinds(tmp_path):
    folder = tmp_path / "kinds"
    rgb = gradient_image(48, 64)
    for mode in ("L", "RGBA", "P", "1"):
        save(folder / f"{mode}.png", np.asarray(Image.fromarray(rgb).convert(mode)))
    Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.jpg")
    save(folder / "16bit.png", rgb[:, :, 0].astype(np.uint16) * 257)
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 270 degrees to view
    save(folder / "rotated.jpg", rgb, exif=exif)
    save(folder / "tiny.png", rgb[:8, :8])
    out = tmp_path / "out"
    assert predict(folder, "-o", out) == 0
    sizes = {p.stem: Image.open(p).size for p in out.iterdir()}
    assert sizes.pop("rotated") == (48, 64) and sizes.pop("tiny") == (8, 8)
    assert set(sizes.values()) == {(64, 48)} and len(sizes) == 6


def test_skip_existing_and_name_collisions(tmp_path, capsys):
    folder = tmp_path / "in"
    save(folder / "x.png", gradient_image(20, 20))
    save(folder / "x.jpg", gradient_image(30, 30))
    out = tmp_path / "out"
    assert predict(folder, "-o", out) == 0
    assert sorted(p.name for p in out.iterdir()) == ["x.jpg.png", "x.png.png"]
    assert Image.open(out / "x.jpg.png").size == (30, 30) and Image.open(out / "x.png.png").size == (20, 20)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    capsys.readouterr()
    assert main(["predict", str(folder), "-o", str(out), "--model", str(model_file()), "--backend", "torch",
                 "--skip-existing"]) == 0
    assert "0 done, 0 failed, 2 skipped" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_onnx_model_file(tree, tmp_path):
    pytest.importorskip("onnxruntime")
    assert predict(tree / "a.png", "-o", tmp_path / "ort.png", model=onnx_file()) == 0
    assert predict(tree / "a.png", "-o", tmp_path / "torch.png") == 0
    ort_mask = np.asarray(Image.open(tmp_path / "ort.png")).astype(int)
    assert np.abs(ort_mask - np.asarray(Image.open(tmp_path / "torch.png"))).max() <= 1


def test_video(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    from tests.infer.test_video import make_clip, read_clip

    (tmp_path / "clips").mkdir()
    clip = make_clip(tmp_path / "clips" / "walk.mp4", frames=6)
    assert predict(tmp_path / "clips", "-o", tmp_path / "out", "--batch-size", "4") == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["walk.cutout.webm", "walk.mask.mp4"]
    assert len(read_clip(tmp_path / "out" / "walk.mask.mp4")[1]) == 6
    assert len(read_clip(tmp_path / "out" / "walk.cutout.webm", rgba=True)[1]) == 6
    assert clip.exists()


@pytest.mark.parametrize("args, message", [
    (["nothing-here.jpg", "-o", "out"], "no such file"),
    (["{tmp}", "-o", "{tmp}/x.png"], "names a file"),
    (["{img}", "-o", "{tmp}/x.jpg", "--cutout"], "transparency"),
    (["{img}", "-o", "{tmp}/o", "--threshold", "1.5"], "--threshold"),
    (["{img}", "-o", "{tmp}/o", "--background", "not-a-colour"], "--background"),
    (["{img}"], "-o OUT"),
    (["{img}", "-o", "{tmp}/o", "--model", "nope"], "nope"),
    (["-", "{img}", "-o", "{tmp}/o"], "stdin"),
    (["{img}", "-o", "{tmp}/o", "--threads", "0"], "--threads"),
])
def test_user_errors_are_one_line(tmp_path, capsys, args, message):
    image = save(tmp_path / "img.png", gradient_image(8, 8))
    save(tmp_path / "img2.png", gradient_image(8, 8))
    argv = [a.format(tmp=tmp_path, img=image) for a in args]
    if "--model" not in argv:
        argv += ["--model", str(model_file()), "--backend", "torch"]
    assert main(["predict", *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_refuses_to_overwrite_its_input(tmp_path, capsys):
    image = save(tmp_path / "img.png", gradient_image(8, 8))
    assert predict(image, "-o", tmp_path) == 1
    assert "overwrite" in capsys.readouterr().err
    assert Image.open(image).mode == "RGB"


def test_output_folder_inside_the_input_folder_is_not_read_back(tree):
    out = tree / "masks"
    assert predict(tree, "-o", out) == 0
    assert predict(tree, "-o", out) == 0  # a second run does not take masks/*.png as inputs
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "a.png", "sub/b.png", "sub/deeper/c.png"]


def test_cli_uses_one_thread_on_a_busy_machine_unless_told(monkeypatch):
    import argparse
    import os

    import torch

    from csnet.cli.predict import add_model_arguments, make_predictor

    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    monkeypatch.setattr(os, "getloadavg", lambda: (float(os.cpu_count() or 1), 0.0, 0.0))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        predictor = make_predictor(parser.parse_args(["--model", str(model_file()), "--device", "cpu",
                                                      "--size", str(SIZE)]))
        assert predictor.backend_name in ("openvino", "torchscript") and torch.get_num_threads() == 1
        assert predictor.runtime.describe().get("threads", 1) == 1  # OpenVINO compiles for the one thread
        make_predictor(parser.parse_args(["--model", str(model_file()), "--device", "cpu", "--threads", "2"]))
        assert torch.get_num_threads() == 2  # --threads wins
        monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
        make_predictor(parser.parse_args(["--model", str(model_file()), "--device", "cpu"]))
        assert torch.get_num_threads() == 2  # an idle machine keeps torch's threads
    finally:
        torch.set_num_threads(before)


# -- refinement, blur, green screen and the papercuts of issue 13 ---------------------------------------------

def test_refine_guided_cutout_reaches_full_opacity(tmp_path):
    pytest.importorskip("cv2")
    source = save(tmp_path / "a.png", gradient_image(48, 64))
    plain, refined = tmp_path / "plain.png", tmp_path / "refined.png"
    assert predict(source, "-o", plain, "--cutout", "-q") == 0
    assert predict(source, "-o", refined, "--cutout", "--refine", "-q") == 0
    alpha = np.asarray(Image.open(refined))[:, :, 3]
    assert alpha.max() == 255 and alpha.min() == 0
    assert not np.array_equal(alpha, np.asarray(Image.open(plain))[:, :, 3])


def test_background_transparent_is_a_cutout_and_green_screen_is_green(tmp_path):
    source = save(tmp_path / "a.png", gradient_image(48, 64))
    assert predict(source, "-o", tmp_path / "t.png", "--background", "transparent", "-q") == 0
    assert Image.open(tmp_path / "t.png").mode == "RGBA"
    assert predict(source, "-o", tmp_path / "g.png", "--background", "#00ff00", "--threshold", "0.5", "-q") == 0
    assert predict(source, "-o", tmp_path / "m.png", "--threshold", "0.5", "-q") == 0
    green, mask = np.asarray(Image.open(tmp_path / "g.png")), np.asarray(Image.open(tmp_path / "m.png"))
    assert (green[mask == 0] == (0, 255, 0)).all()


def test_blur_output(tmp_path):
    source = save(tmp_path / "a.png", gradient_image(48, 64))
    assert predict(source, "-o", tmp_path / "b.png", "--blur", "3", "-q") == 0
    assert np.asarray(Image.open(tmp_path / "b.png")).shape == (48, 64, 3)


def test_missing_input_is_reported_as_missing(tmp_path, capsys):
    assert predict(tmp_path / "nope.jpg", "-o", tmp_path / "out.png", "-q") == 1
    err = capsys.readouterr().err
    assert "no such file or directory" in err and "names a file" not in err


def test_stdin_errors_name_stdin(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"not an image")))
    assert predict("-", "-o", "-") == 1
    err = capsys.readouterr().err
    assert "<stdin>" in err and "<bytes>" not in err


def test_watch_processes_new_files_and_stops_on_ctrl_c(tmp_path, monkeypatch):
    import csnet.cli.predict as predict_cli

    folder, out = tmp_path / "in", tmp_path / "out"
    save(folder / "old.png", gradient_image(24, 24))
    polls = [0]

    def fake_sleep(seconds):  # each poll: a file arrives on the first, then two stable polls, then Ctrl-C
        polls[0] += 1
        if polls[0] == 1:
            save(folder / "new.png", gradient_image(30, 20))
            frames = [Image.fromarray(gradient_image(24, 24, seed=i)) for i in range(2)]
            frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:])
        if polls[0] == 4:
            raise KeyboardInterrupt

    # only the watch loop's sleep: ffmpeg's writers sleep too, through the same time module
    monkeypatch.setattr(predict_cli, "time", types.SimpleNamespace(sleep=fake_sleep, perf_counter=time.perf_counter))
    assert predict(folder, "-o", out, "--watch") == 0
    assert (out / "old.png").is_file()
    assert Image.open(out / "new.png").size == (20, 30)
    if importlib.util.find_spec("imageio_ffmpeg"):  # an animated GIF arriving is a clip, as in a plain run
        assert (out / "anim.mask.mp4").is_file() and (out / "anim.cutout.webm").is_file()


def test_video_to_a_named_file_and_frames_per_second(tmp_path, capsys):
    pytest.importorskip("imageio_ffmpeg")
    from tests.infer.test_video import make_clip, read_clip

    clip = make_clip(tmp_path / "walk.mp4", frames=5)
    out = tmp_path / "result.mp4"
    assert main(["predict", str(clip), "-o", str(out), "--model", str(model_file()), "--backend", "torch",
                 "--size", str(SIZE), "--refine"]) == 0
    assert out.is_file() and not out.is_dir() and len(read_clip(out)[1]) == 5
    summary = capsys.readouterr().out
    assert "5 video frames (" in summary and "frames/s)" in summary


def test_animated_gif_is_processed_as_a_video(tmp_path, monkeypatch, caplog, capsys):
    pytest.importorskip("imageio_ffmpeg")
    frames = [Image.fromarray(gradient_image(24, 24, seed=i)) for i in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert predict(tmp_path / "anim.gif", "-o", tmp_path / "out") == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["anim.cutout.webm", "anim.mask.mp4"]
    assert predict(tmp_path / "anim.gif", "-o", tmp_path / "anim.png") == 1  # a still file for a clip: refused
    assert "an animated GIF is processed as a video" in capsys.readouterr().err

    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # without the video extra: the first frame, said
    with caplog.at_level("WARNING"):
        assert predict(tmp_path / "anim.gif", "-o", tmp_path / "mask.png") == 0
    assert "3 frames; only the first is used (pip install 'csnet[video]'" in caplog.text
    assert (tmp_path / "mask.png").is_file()


def test_refine_without_its_library_is_refused_up_front(tmp_path, monkeypatch, capsys):
    save(tmp_path / "a.png", gradient_image(16, 16))
    monkeypatch.setitem(sys.modules, "cv2", None)
    assert predict(tmp_path / "a.png", "-o", tmp_path / "mask.png", "--refine") == 1
    assert "--refine guided needs cv2: pip install 'csnet[refine]'" in capsys.readouterr().err
    assert not (tmp_path / "mask.png").exists()


def test_preset_reaches_the_named_runtime_and_is_checked(tmp_path, capsys):
    image = save(tmp_path / "img.png", gradient_image(40, 60))
    common = [str(image), "--model", str(model_file()), "--size", str(SIZE), "-q"]
    for preset in ("float32", "bfloat16"):
        assert main(["predict", *common, "-o", str(tmp_path / f"{preset}.png"), "--runtime", "eager",
                     "--preset", preset]) == 0
    exact = np.asarray(Image.open(tmp_path / "float32.png"), dtype=np.int16)
    rounded = np.asarray(Image.open(tmp_path / "bfloat16.png"), dtype=np.int16)
    assert exact.shape == rounded.shape == (40, 60)
    difference = np.abs(exact - rounded)
    # bfloat16 ran (the masks differ) on the same image (on average they agree; the random test weights leave
    # single pixels far apart)
    assert difference.max() > 0 and difference.mean() < 40

    for extra, message in ((["--runtime", "eager", "--preset", "int4"], "no preset 'int4'"),
                           (["--preset", "bfloat16"], "--runtime")):
        assert main(["predict", *common, "-o", str(tmp_path / "x.png"), *extra]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "x.png").exists()
