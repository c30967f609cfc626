"""The real datasets in ../shared (SPEC 6): found, paired and clean."""
from __future__ import annotations

import pytest

from csnet.data.dataset import DatasetConfig, SaliencyDataset
from csnet.data.pairs import pair_dataset, split_pairs
from csnet.data.scan import scan_dataset
from tests.shared_data import require_shared

pytestmark = pytest.mark.shared


def test_pascal_s_scans_clean_for_evaluation():
    root = require_shared("data", "PASCAL-S")
    pairs, report = scan_dataset(root, purpose="eval", workers=2)
    assert len(pairs) == 850 and report.n_found == 850
    assert report.ok and not report.unpaired_images and not report.unpaired_masks
    assert not report.nonbinary_masks  # SPEC 6: masks already thresholded at 128
    assert report.layouts == ("PASCAL-S: images/ + masks/",)


def test_humanseg_scans_for_training():
    root = require_shared("data", "HumanSeg")
    pairs, report = scan_dataset(root, workers=2)
    assert len(pairs) == 290 and report.ok


def test_concatenated_real_datasets_train_on_a_slice():
    pascal = require_shared("data", "PASCAL-S")
    human = require_shared("data", "HumanSeg")
    pairs = pair_dataset(f"{pascal},{human}")
    assert len(pairs) == 1140 and len({p.key for p in pairs}) == 1140
    train, val = split_pairs(pairs, 0.1, seed=0)
    assert len(val) == 114 and {p.key.split("/")[0] for p in val} == {"PASCAL-S", "HumanSeg"}
    data = SaliencyDataset(train[:8], DatasetConfig(), workers=2)
    image, mask = data[0]
    assert image.shape == (3, 224, 224) and mask.shape == (1, 224, 224)
    assert -2.2 < float(image.min()) and float(image.max()) < 2.7
