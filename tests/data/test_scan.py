"""scan_dataset: the report, the train/eval policies and the decode cache."""
from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest

import csnet.data.scan as scan_module
from csnet.data.cache import SampleCache
from csnet.data.pairs import DatasetError
from csnet.data.scan import normalize_mask, scan_dataset
from tests.data.conftest import make_dataset, write_pair


@pytest.fixture
def messy(tmp_path):
    """2 good pairs, an unpaired image and mask, a size mismatch, a gray mask, a 0/1 mask and a
    truncated image."""
    root = make_dataset(tmp_path / "messy", 2)
    write_pair(root, "only_image", mask_dir="nowhere")
    write_pair(root, "only_mask", image_dir="nowhere")
    write_pair(root, "mismatch", size=(40, 30), mask_size=(30, 40))
    gray = np.tile(np.arange(0, 240, 8, dtype=np.uint8), (30, 1))[:, :40]
    gray = np.pad(gray, ((0, 0), (0, 40 - gray.shape[1])), constant_values=255)
    write_pair(root, "gray", mask=gray)
    labels = np.zeros((30, 40), np.uint8)
    labels[10:20, 10:30] = 1
    write_pair(root, "labels", mask=labels)
    broken, _ = write_pair(root, "broken", image_ext=".jpg")
    broken.write_bytes(broken.read_bytes()[:200])
    return root


def test_report_in_training(messy, caplog):
    with caplog.at_level(logging.WARNING, logger="csnet.data"):
        pairs, report = scan_dataset(messy, workers=2)
    assert sorted(p.stem for p in pairs) == ["gray", "labels", "s0", "s1"]
    assert report.n_found == 6 and report.n_usable == 4
    assert [p.name for p in report.unpaired_images] == ["only_image.png"]
    assert [p.name for p in report.unpaired_masks] == ["only_mask.png"]
    assert [(p.name, "truncated" in why) for p, why in report.unreadable] == [("broken.jpg", True)]
    ((image, mask, image_size, mask_size),) = report.size_mismatches
    assert (image.stem, image_size, mask_size) == ("mismatch", (40, 30), (30, 40))
    assert [p.stem for p in report.nonbinary_masks] == ["gray"]
    assert [p.stem for p in report.label_masks] == ["labels"]
    assert report.skipped and not report.ok
    assert "broken.jpg" in caplog.text and "skipped" in caplog.text
    summary = report.summary()
    assert "4 usable of 6 found" in summary and "size mismatches: 1" in summary
    assert "broken.jpg" in summary
    json.dumps(report.to_dict())  # JSON-ready


def test_evaluation_refuses_bad_pairs_unless_skip_bad(messy):
    with pytest.raises(DatasetError, match="broken.jpg") as info:
        scan_dataset(messy, purpose="eval")
    assert "skip_bad" in str(info.value) and "mismatch" in str(info.value)
    pairs, report = scan_dataset(messy, purpose="eval", skip_bad=True)
    assert len(pairs) == 4 and report.skipped


def test_clean_dataset_report(small_dataset):
    pairs, report = scan_dataset(small_dataset, purpose="eval")
    assert len(pairs) == 6 and report.ok and not report.skipped
    assert report.layouts == ("toy: images/ + GT/",)


def test_nothing_usable_is_an_error(tmp_path):
    image, _ = write_pair(tmp_path, "a")
    image.write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="no usable"):
        scan_dataset(tmp_path)


def test_normalize_mask():
    gray = np.array([[0, 1, 128, 129, 255]], np.uint8)
    out, kind = normalize_mask(gray)
    assert kind == "thresholded"
    np.testing.assert_array_equal(out, [[0, 0, 0, 255, 255]])  # > 128, as the metrics do
    out, kind = normalize_mask(gray, None)
    assert kind == "soft"
    np.testing.assert_array_equal(out, gray)
    binary = np.array([[0, 255]], np.uint8)
    assert normalize_mask(binary)[1] == "binary"
    out, kind = normalize_mask(np.array([[0, 1]], np.uint8))
    assert kind == "labels"
    np.testing.assert_array_equal(out, [[0, 255]])
    assert normalize_mask(np.zeros((2, 2), np.uint8))[1] == "binary"  # no object at all


class _CountingDecoder:
    def __init__(self, monkeypatch):
        self.calls = 0
        for name in ("load_image", "load_mask"):
            original = getattr(scan_module, name)
            monkeypatch.setattr(scan_module, name, self._wrap(original))

    def _wrap(self, fn):
        def counted(*args, **kwargs):
            self.calls += 1
            return fn(*args, **kwargs)
        return counted


def test_memory_cache_second_pass_does_not_decode(small_dataset, monkeypatch):
    decoder = _CountingDecoder(monkeypatch)
    cache = SampleCache(48)
    first = scan_dataset(small_dataset, cache=cache)
    assert decoder.calls == 12  # 6 images + 6 masks
    second = scan_dataset(small_dataset, cache=cache)
    assert decoder.calls == 12
    assert first == second
    key = cache.key(first.pairs[0])
    sample = cache.array(key)
    assert sample.shape == (48, 48, 4) and sample.dtype == np.uint8
    assert set(np.unique(sample[:, :, 3])) > {0, 255}  # resized mask: soft edges


def test_disk_cache_survives_the_process_and_notices_edits(small_dataset, tmp_path, monkeypatch):
    decoder = _CountingDecoder(monkeypatch)
    cache_dir = tmp_path / "cache"
    pairs, _ = scan_dataset(small_dataset, cache=SampleCache(48, directory=cache_dir))
    assert decoder.calls == 12
    assert len(list(cache_dir.rglob("*.npy"))) == 6 and len(list(cache_dir.rglob("*.json"))) == 6
    fresh = SampleCache(48, directory=cache_dir)  # as in a new process
    again = scan_dataset(small_dataset, cache=fresh)
    assert decoder.calls == 12 and again.pairs == pairs
    stat = os.stat(pairs[0].mask)
    os.utime(pairs[0].mask, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    scan_dataset(small_dataset, cache=SampleCache(48, directory=cache_dir))
    assert decoder.calls == 14  # only the edited pair
    # Another resolution or threshold is another entry, never a stale one.
    assert SampleCache(64, directory=cache_dir).key(pairs[1]) != fresh.key(pairs[1])
    assert (SampleCache(48, mask_threshold=None, directory=cache_dir).key(pairs[1])
            != fresh.key(pairs[1]))


def test_damaged_disk_entry_is_decoded_again(small_dataset, tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"
    scan_dataset(small_dataset, cache=SampleCache(48, directory=cache_dir))
    next(cache_dir.rglob("*.json")).write_text("{not json")
    decoder = _CountingDecoder(monkeypatch)
    scan_dataset(small_dataset, cache=SampleCache(48, directory=cache_dir))
    assert decoder.calls == 2


def test_cache_threshold_must_match(small_dataset):
    with pytest.raises(ValueError, match="thresholded"):
        scan_dataset(small_dataset, cache=SampleCache(48, mask_threshold=100))


def test_progress_callback(small_dataset):
    seen = []
    scan_dataset(small_dataset, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (6, 6) and len(seen) == 6
