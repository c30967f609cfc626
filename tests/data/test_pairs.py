"""Layout detection, list files, concatenation and the stable split."""
from __future__ import annotations

from pathlib import Path

import pytest

from csnet.data.pairs import (
    LAYOUTS,
    DatasetError,
    ImagePair,
    collect_pairs,
    detect_layout,
    pair_dataset,
    read_list_file,
    split_pairs,
)
from tests.data.conftest import make_dataset, write_pair


@pytest.mark.parametrize("image_dir, mask_dir", LAYOUTS)
def test_every_layout_detected(tmp_path, image_dir, mask_dir):
    root = make_dataset(tmp_path / "ds", 3, image_dir=image_dir, mask_dir=mask_dir,
                        image_ext=".jpg")
    found = detect_layout(root)
    assert (found[0].name, found[1].name) == (image_dir, mask_dir)
    pairs = pair_dataset(root)
    assert [p.key for p in pairs] == ["ds/s0", "ds/s1", "ds/s2"]
    assert all(p.image.parent.name == image_dir and p.mask.suffix == ".png" for p in pairs)


def test_layout_names_ignore_case(tmp_path):
    make_dataset(tmp_path, 2, image_dir="Images", mask_dir="gt")
    assert len(pair_dataset(tmp_path)) == 2


def test_no_layout_lists_what_is_there(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(DatasetError, match="photos") as info:
        detect_layout(tmp_path)
    assert "images/+GT/" in str(info.value)
    with pytest.raises(DatasetError, match="not found"):
        detect_layout(tmp_path / "nothing")


def test_ambiguous_layout_is_an_error(tmp_path):
    make_dataset(tmp_path, 1, mask_dir="GT")
    make_dataset(tmp_path, 1, mask_dir="masks")
    with pytest.raises(DatasetError, match="ambiguous"):
        pair_dataset(tmp_path)


def test_unpaired_duplicate_and_hidden_files(tmp_path):
    make_dataset(tmp_path, 3)
    write_pair(tmp_path, "lonely_mask", image_dir="elsewhere")
    (tmp_path / "images" / "lonely_image.jpg").write_bytes(b"x")
    (tmp_path / "images" / "s0.jpg").write_bytes(b"x")  # same stem as s0.png
    (tmp_path / "images" / "._s1.png").write_bytes(b"x")  # macOS resource fork
    (tmp_path / "images" / "readme.txt").write_text("not a sample")
    pairing = collect_pairs(tmp_path)
    assert [p.stem for p in pairing.pairs] == ["s0", "s1", "s2"]
    assert pairing.pairs[0].image.name == "s0.jpg"  # first by name; the other is a duplicate
    assert [p.name for p in pairing.duplicates] == ["s0.png"]
    assert [p.name for p in pairing.unpaired_images] == ["lonely_image.jpg"]
    assert [p.name for p in pairing.unpaired_masks] == ["lonely_mask.png"]


def test_empty_dataset_is_an_error(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "GT").mkdir()
    with pytest.raises(DatasetError, match="no image/mask pairs"):
        pair_dataset(tmp_path)


def test_list_file(tmp_path):
    make_dataset(tmp_path / "a", 2)
    write_pair(tmp_path / "b c", "s0")  # a folder with a space: needs the tab form
    listing = tmp_path / "lists" / "train.txt"
    listing.parent.mkdir()
    listing.write_text(
        "# comment\n"
        "\n"
        "../a/images/s0.png ../a/GT/s0.png\n"
        f"{tmp_path}/a/images/s1.png   {tmp_path}/a/GT/s1.png\n"
        "../b c/images/s0.png\t../b c/GT/s0.png\n"
        "../a/images/gone.png ../a/GT/gone.png\n")
    entries = read_list_file(listing)
    assert len(entries) == 4
    pairing = collect_pairs(listing)
    assert [p.key for p in pairing.pairs] == [
        "lists/../a/images/s0", "lists/../a/images/s1", "lists/../b c/images/s0"]
    assert len({p.key for p in pairing.pairs}) == 3  # same stem twice, distinct keys
    assert all(p.image.is_file() and p.mask.is_file() for p in pairing.pairs)
    assert sorted(p.name for p, _ in pairing.missing) == ["gone.png", "gone.png"]
    assert pairing.layouts == ("lists: list file train.txt",)


def test_list_file_bad_line_names_it(tmp_path):
    listing = tmp_path / "l.txt"
    listing.write_text("a.png b.png\nonly_one.png\n")
    with pytest.raises(DatasetError, match=r"l\.txt:2"):
        read_list_file(listing)


def test_concatenation(tmp_path):
    a = make_dataset(tmp_path / "A", 2)
    b = make_dataset(tmp_path / "B", 3, image_dir="Imgs", mask_dir="GT")
    keys = [p.key for p in pair_dataset(f"{a},{b}")]
    assert keys == ["A/s0", "A/s1", "B/s0", "B/s1", "B/s2"]
    assert [p.key for p in pair_dataset([a, b])] == keys
    assert len(collect_pairs([a, b]).layouts) == 2


def test_folder_with_comma_in_name(tmp_path):
    root = make_dataset(tmp_path / "x,y", 2)
    assert len(pair_dataset(str(root))) == 2


def _pairs(n: int, name: str = "D") -> list[ImagePair]:
    return [ImagePair(Path(f"/{name}/images/{i}.jpg"), Path(f"/{name}/GT/{i}.png"), f"{name}/{i}")
            for i in range(n)]


def test_split_is_stable_and_exact():
    pairs = _pairs(100)
    train, val = split_pairs(pairs, 0.1, seed=0)
    assert len(val) == 10 and len(train) == 90
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(pairs)
    assert train == [p for p in pairs if p in set(train)]  # input order kept
    assert split_pairs(list(pairs), 0.1, seed=0) == (train, val)
    # Pinned: the split must not change between versions, machines or Python hash seeds.
    assert [p.key for p in val] == PINNED_VAL
    assert split_pairs(pairs, 0.1, seed=1)[1] != val
    # Keyed by the sample, not its position: shuffling the input keeps the same validation set.
    assert set(split_pairs(pairs[::-1], 0.1, seed=0)[1]) == set(val)


PINNED_VAL = ['D/20', 'D/23', 'D/36', 'D/54', 'D/57', 'D/61', 'D/72', 'D/74', 'D/80', 'D/97']


def test_split_edge_cases():
    pairs = _pairs(5)
    assert split_pairs(pairs, 0.0) == (pairs, [])
    assert len(split_pairs(pairs, 0.01)[1]) == 1  # at least one when asked for any
    assert split_pairs(pairs[:1], 0.5) == (pairs[:1], [])
    with pytest.raises(ValueError):
        split_pairs(pairs, 1.0)
