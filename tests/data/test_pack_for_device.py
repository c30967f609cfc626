"""tools/pack_for_device.py: a small, self-contained copy of training pairs the trainer reads back."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from csnet.data.pairs import TEACHER_LIST_HEADER, collect_pairs
from tests.data.conftest import make_dataset, write_pair
from tests.scripts import load_script


def _pack_main():
    return load_script("tools/pack_for_device.py").main


def _teacher_list(root: Path, n: int) -> Path:
    """A teacher's label list as ``csnet label`` writes it: header line, then ``image<TAB>map`` lines."""
    lines = [f"{TEACHER_LIST_HEADER} toy-teacher"]
    for i in range(n):
        soft = np.linspace(0, 255, 64 * 48).reshape(48, 64).astype(np.uint8)  # soft values must survive
        image, mask = write_pair(root, f"u{i}", mask_dir="maps", size=(64, 48), mask=soft, image_ext=".jpg")
        lines.append(f"{image}\t{mask}")
    path = root / "labels.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_pack_round_trips_through_the_trainers_reader(tmp_path: Path) -> None:
    gt = make_dataset(tmp_path / "gt", 3, size=(600, 300))
    teacher = _teacher_list(tmp_path / "teacher", 2)
    out = tmp_path / "pack"
    assert _pack_main()([f"{gt},{teacher}", "-o", str(out), "--side", "128"]) == 0

    packed_gt = collect_pairs(out / "gt.txt").pairs
    packed_teacher = collect_pairs(out / "labels.txt").pairs
    assert len(packed_gt) == 3 and not any(p.teacher for p in packed_gt)
    assert len(packed_teacher) == 2 and all(p.teacher for p in packed_teacher)
    with Image.open(packed_gt[0].image) as image, Image.open(packed_gt[0].mask) as mask:
        assert image.size == mask.size == (128, 64)  # longest side fitted, aspect kept
    with Image.open(packed_teacher[0].mask) as soft:
        assert soft.size == (64, 48)  # never enlarged
        assert len(np.unique(np.asarray(soft))) > 100  # a soft map stays soft
    report = json.loads((out / "pack.json").read_text())
    assert [s["packed"] for s in report["sources"]] == [3, 2]


def test_budget_cuts_the_last_source_short(tmp_path: Path) -> None:
    gt = make_dataset(tmp_path / "gt", 4, size=(200, 200))
    whole = tmp_path / "whole"
    assert _pack_main()([str(gt), "-o", str(whole)]) == 0
    total = json.loads((whole / "pack.json").read_text())["bytes"]

    out = tmp_path / "pack"
    assert _pack_main()([str(gt), "-o", str(out), "--budget-mib", str(0.6 * total / 2**20)]) == 0
    packed = json.loads((out / "pack.json").read_text())
    assert packed["bytes"] <= 0.6 * total
    assert 1 <= len(collect_pairs(out / "gt.txt").pairs) == packed["sources"][0]["packed"] < 4


def test_a_source_cut_short_is_an_even_sample_of_it(tmp_path: Path) -> None:
    # a teacher's list holds its photo folders one after another; a cut must not keep only the first
    lines = [f"{TEACHER_LIST_HEADER} toy-teacher"]
    for folder in ("a", "b"):
        for i in range(6):
            image, mask = write_pair(tmp_path / folder, f"{folder}{i}", mask_dir="maps", size=(64, 64))
            lines.append(f"{image}\t{mask}")
    teacher = tmp_path / "labels.txt"
    teacher.write_text("\n".join(lines) + "\n")
    whole = tmp_path / "whole"
    assert _pack_main()([str(teacher), "-o", str(whole)]) == 0
    total = json.loads((whole / "pack.json").read_text())["bytes"]

    out = tmp_path / "pack"
    assert _pack_main()([str(teacher), "-o", str(out), "--budget-mib", str(0.5 * total / 2**20)]) == 0
    packed = {p.image.name.split("-", 1)[1][0] for p in collect_pairs(out / "labels.txt").pairs}
    assert packed == {"a", "b"}


def test_two_sources_with_one_pack_name_are_refused(tmp_path: Path) -> None:
    first = _teacher_list(tmp_path / "one", 1)
    second = _teacher_list(tmp_path / "two", 1)  # both are labels.txt: their packed lists would collide
    out = tmp_path / "pack"
    with pytest.raises(SystemExit) as exit_info:
        _pack_main()([f"{first},{second}", "-o", str(out)])
    assert exit_info.value.code == 2 and not out.exists()
