"""Distillation: a teacher card, soft maps written once (resumable, tied to one teacher), and training on them.

The teacher here is a tiny ONNX graph made by the test (brightness -> probability), so what it should
say about each pixel is known exactly.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from csnet.cli.main import main
from csnet.distill import OnnxTeacher, TeacherError, TeacherProtocol, label_images
from csnet.infer.resize import resize_image
from tests.shared_data import require_shared
from tests.train.conftest import make_dataset

pytest.importorskip("onnxruntime")

CARD = {"name": "bright", "licence": "MIT",
        "input": {"size": [32, 32], "scale": "255", "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]},
        "output": {"index": 0, "probability": True}}


class _Brightness(torch.nn.Module):
    """p = sigmoid(20 * (mean RGB - 0.5)): bright pixels are salient."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(20.0 * (x.mean(dim=1, keepdim=True) - 0.5))


def make_teacher(folder: Path, card: dict = CARD, name: str = "bright") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.onnx"
    torch.onnx.export(_Brightness(), torch.zeros(1, 3, 32, 32), str(path), input_names=["input"],
                      output_names=["p"], dynamo=False)
    (folder / f"{name}.json").write_text(json.dumps(card))
    return path


def make_photos(folder: Path, n: int = 4) -> Path:
    rng = np.random.default_rng(0)
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image = rng.integers(0, 80, (40, 56, 3), dtype=np.uint8)
        image[10:30, 15:40] = 230
        Image.fromarray(image).save(folder / ("sub" if i % 2 else ".") / f"p{i}.jpg", quality=95)
    return folder


def test_card_in_prose_and_structured_agree_and_bad_cards_fail() -> None:
    prose = {"name": "u2netp", "licence": "Apache-2.0",
             "input": {"size": [320, 320], "scale": "divide the RGB image by its maximum value",
                       "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
             "output": "first output (d0), already a probability (sigmoid applied inside the graph)"}
    p = TeacherProtocol.from_card(prose)
    assert (p.size, p.scale, p.probability, p.output_index) == ((320, 320), "max", True, 0)
    structured = TeacherProtocol.from_card({**prose, "input": {**prose["input"], "scale": "max"},
                                            "output": {"index": 0, "probability": True}})
    assert structured.to_dict() == p.to_dict()
    for broken in ({"input": {"size": [0, 5]}}, {"input": {**prose["input"], "scale": "by eye"}},
                   {"input": prose["input"], "output": "a map"}, {"input": {**prose["input"], "std": [1, 0, 1]}}):
        with pytest.raises(TeacherError):
            TeacherProtocol.from_card(broken)


def test_teacher_maps_follow_its_protocol(tmp_path: Path) -> None:
    teacher = OnnxTeacher(make_teacher(tmp_path / "t"), runtime="onnxruntime")
    image = np.zeros((40, 56, 3), np.uint8)
    image[:, 28:] = 255
    soft = teacher.predict(image)
    assert soft.shape == (40, 56) and soft.dtype == np.float32
    assert soft[:, :20].max() < 0.01 and soft[:, 36:].min() > 0.99  # dark left, bright right


def test_openvino_runs_the_teacher_as_onnxruntime_does(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    path = make_teacher(tmp_path / "t")
    image = np.random.default_rng(1).integers(0, 256, (37, 50, 3), dtype=np.uint8)
    a = OnnxTeacher(path, runtime="onnxruntime").predict(image)
    b = OnnxTeacher(path, runtime="openvino").predict(image)
    assert np.abs(a - b).max() < 1e-4


def test_the_teachers_resize_matches_torch() -> None:
    x = np.random.default_rng(0).random((13, 17, 3)).astype(np.float32)
    ours = resize_image(x, 29, 8)
    theirs = torch.nn.functional.interpolate(torch.from_numpy(x).permute(2, 0, 1)[None], size=(29, 8),
                                             mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()
    assert np.abs(ours - theirs).max() < 1e-5


def test_labelling_writes_once_resumes_and_refuses_another_teacher(tmp_path: Path) -> None:
    photos = make_photos(tmp_path / "photos")
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    teacher = OnnxTeacher(make_teacher(tmp_path / "t"), runtime="onnxruntime")
    out = tmp_path / "labels"
    report = label_images(teacher, [photos], out, progress=False, exclude=[photos / "p0.jpg"])
    assert (report.labelled, report.reused, len(report.failed)) == (3, 0, 1)
    lines = [line.split("\t") for line in report.list_file.read_text().splitlines() if not line.startswith("#")]
    assert len(lines) == 3 and not any("p0" in image for image, _ in lines)
    for image, soft in lines:
        assert Image.open(out / soft).size == Image.open(image).size
        assert np.asarray(Image.open(out / soft))[20, 27] > 240  # the bright block
    again = label_images(teacher, [photos], out, progress=False)
    assert (again.labelled, again.reused) == (1, 3)  # only p0 is new
    other = OnnxTeacher(make_teacher(tmp_path / "t2", {**CARD, "input": {**CARD["input"], "size": [16, 16]}}),
                        runtime="onnxruntime")
    with pytest.raises(TeacherError, match="another teacher"):
        label_images(other, [photos], out, progress=False)


def test_label_command_reports_a_missing_card(tmp_path: Path, capsys) -> None:
    path = make_teacher(tmp_path / "t")
    path.with_suffix(".json").unlink()
    assert main(["label", str(path), str(make_photos(tmp_path / "photos")), "-o", str(tmp_path / "l")]) == 1
    assert "no teacher card" in capsys.readouterr().err


def test_train_with_a_teacher_learns_from_its_soft_maps(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "GTDATA", n=4)
    photos = make_photos(tmp_path / "photos", n=6)
    teacher = make_teacher(tmp_path / "t")
    out = tmp_path / "run"
    code = main(["train", "--out", str(out), "--model", "csnet_x1", "--data", str(data), "--teacher", str(teacher),
                 "--unlabeled", str(photos), "--size", "32", "--epochs", "1", "--batch-size", "4", "--workers", "0",
                 "--no-tensorboard", "--no-progress", "--loss", "bce+iou", "--channels-last"])
    assert code == 0
    assert len((out / "labels" / "labels.txt").read_text().splitlines()) == 6 + 1  # comment line
    from csnet.train.config import TrainConfig
    from csnet.train.data import build_data
    from csnet.train.distributed import DistInfo

    config = TrainConfig.load(out / "config.json")
    run = build_data(config, out, DistInfo(), torch.device("cpu"))
    assert len(run.train) == 4 + 6
    soft = torch.stack([run.train[(1, i)][1] for i in range(len(run.train))])
    assert ((soft > 0.05) & (soft < 0.95)).any()  # teacher maps stay soft, not binarized


def test_the_shared_teacher_labels_shared_photos(tmp_path: Path) -> None:
    teacher_path = require_shared("weights", "teachers", "u2netp.onnx")
    photos = require_shared("data", "unlabeled", "flowers17")
    report = label_images(OnnxTeacher(teacher_path), [photos], tmp_path / "l", limit=2, progress=False)
    assert report.labelled == 2
    for line in report.list_file.read_text().splitlines()[1:]:
        image, soft = line.split("\t")
        values = np.asarray(Image.open(tmp_path / "l" / soft))
        assert values.shape == np.asarray(Image.open(image)).shape[:2]
        assert values.max() > 200 and values.min() < 50  # a confident object on a background
