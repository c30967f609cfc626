"""SaliencyDataset: samples, epochs, caches, and the on-device path."""
from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

import csnet.data.scan as scan_module
from csnet.data.cache import SampleCache
from csnet.data.dataset import DatasetConfig, SaliencyDataset
from csnet.data.pairs import pair_dataset
from csnet.io.images import load_mask
from tests.data.conftest import write_pair

CONFIG = DatasetConfig(size=32, seed=3)  # small: the tests run on two CPU cores


@pytest.fixture
def dataset(small_dataset) -> SaliencyDataset:
    return SaliencyDataset(pair_dataset(small_dataset), CONFIG, workers=1)


def test_sample_shapes_and_ranges(dataset):
    assert len(dataset) == 6
    image, mask = dataset[0]
    assert image.shape == (3, 32, 32) and mask.shape == (1, 32, 32)
    assert image.dtype == mask.dtype == torch.float32
    assert 0 <= mask.min() and mask.max() <= 1
    # The BCE target stays soft after resizing (the release did not binarize it again).
    assert ((mask > 0.01) & (mask < 0.99)).any()
    assert dataset.raw(0).shape == (4, 64, 64)  # default cache: size + 32


def test_epochs_and_reproducibility(dataset, small_dataset):
    first = dataset[2]
    assert all(torch.equal(a, b) for a, b in zip(first, dataset[2]))
    dataset.set_epoch(5)
    later = dataset[2]
    assert dataset.epoch == 5
    assert all(torch.equal(a, b) for a, b in zip(later, dataset[(5, 2)]))
    assert all(torch.equal(a, b) for a, b in zip(first, dataset[(0, 2)]))
    assert any(not torch.equal(dataset[(e, 2)][0], first[0]) for e in range(1, 5))
    # A new run (a resume) with the same seed draws exactly the same samples.
    rebuilt = SaliencyDataset(pair_dataset(small_dataset), CONFIG, workers=2)
    rebuilt.set_epoch(5)
    assert all(torch.equal(a, b) for a, b in zip(later, rebuilt[2]))
    with pytest.raises(IndexError):
        dataset[6]
    assert torch.equal(dataset[-1][1], dataset[5][1])


def test_on_device_path_equals_item_path(dataset):
    dataset.set_epoch(1)
    data = dataset.uint8_tensor()
    assert data.shape == (6, 4, 64, 64) and data.dtype == torch.uint8
    indices = [4, 0, 3]
    images, masks = dataset.gpu_augment()(data[indices], dataset.augment_params(indices))
    expected = [dataset[i] for i in indices]
    torch.testing.assert_close(images, torch.stack([e[0] for e in expected]))
    torch.testing.assert_close(masks, torch.stack([e[1] for e in expected]))


def test_dataloader_batches(dataset):
    images, masks = next(iter(DataLoader(dataset, batch_size=4, shuffle=False)))
    assert images.shape == (4, 3, 32, 32) and masks.shape == (4, 1, 32, 32)


def test_without_augmentation_is_the_test_protocol_resize(small_dataset):
    pairs = pair_dataset(small_dataset)
    plain = SaliencyDataset(pairs, DatasetConfig(size=32, augment=False), workers=1)
    assert plain.raw(0).shape == (4, 32, 32)  # cached at the output size: one resize only
    mask = torch.from_numpy(load_mask(pairs[0].mask)).float()[None, None]
    ref = F.interpolate(mask, size=(32, 32), mode="bilinear", align_corners=False) / 255
    torch.testing.assert_close(plain[0][1][None], ref, atol=0.5 / 255, rtol=0)  # uint8 cache
    plain.set_epoch(7)
    assert torch.equal(plain[0][0], plain[(0, 0)][0])


def test_shared_cache_and_disk_cache_skip_decoding(small_dataset, tmp_path, monkeypatch):
    calls = []
    original = scan_module.load_image

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(scan_module, "load_image", counted)
    pairs = pair_dataset(small_dataset)
    cache = SampleCache(CONFIG.resolved_cache_size)
    scan_module.scan_dataset(small_dataset, cache=cache, workers=1)
    assert len(calls) == 6
    SaliencyDataset(pairs, CONFIG, cache=cache)
    assert len(calls) == 6  # the scan's decode served the dataset
    disk = dataclasses.replace(CONFIG, cache_dir=str(tmp_path / "cache"))
    first = SaliencyDataset(pairs, disk, workers=1)
    assert len(calls) == 12
    second = SaliencyDataset(pairs, disk, workers=1)  # a new run: memory is empty, disk is not
    assert len(calls) == 12
    assert torch.equal(first[3][0], second[3][0])
    assert not second.cache.array(second._keys[0]).flags.writeable  # memory-mapped


def test_cache_size_must_match(small_dataset):
    with pytest.raises(ValueError, match="64px"):
        SaliencyDataset(pair_dataset(small_dataset), CONFIG, cache=SampleCache(50))


def test_bad_pairs_skipped_with_warning(small_dataset, caplog):
    image, _ = write_pair(small_dataset, "zzz_broken")
    image.write_bytes(b"not an image")
    with caplog.at_level(logging.WARNING):
        data = SaliencyDataset(pair_dataset(small_dataset), CONFIG, workers=1)
    assert len(data) == 6 and "zzz_broken" in caplog.text
    assert [p.name for p, _ in data.report.unreadable] == ["zzz_broken.png"]


def test_from_source_reports_unpaired(small_dataset):
    write_pair(small_dataset, "lonely", mask_dir="elsewhere")
    data = SaliencyDataset.from_source(str(small_dataset), CONFIG, workers=1)
    assert len(data) == 6 and [p.stem for p in data.report.unpaired_images] == ["lonely"]
    assert data.image_sizes == [(40, 30)] * 6


def test_config_roundtrips_through_json_and_validates():
    config = DatasetConfig(size=96, cache_dir="/tmp/x", mask_threshold=None)
    again = DatasetConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert DatasetConfig(augment=False).resolved_cache_size == 224
    assert DatasetConfig().resolved_cache_size == 256
    for bad in ({"size": 0}, {"flip_p": 1.5}, {"max_trim": -1}, {"mask_threshold": 300},
                {"std": (1.0, 0.0, 1.0)}):
        with pytest.raises(ValueError):
            DatasetConfig(**bad)
    with pytest.raises(ValueError, match="unknown"):
        DatasetConfig.from_dict({"sise": 3})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.size = 3  # type: ignore[misc]


def test_trims_are_in_original_pixels(tmp_path):
    # A wide image: the same 14 px trim is a smaller fraction of its width than of its height.
    write_pair(tmp_path, "wide", size=(400, 40))
    data = SaliencyDataset(pair_dataset(tmp_path), CONFIG, workers=1)
    boxes = torch.cat([data.augment_params([0], e).boxes for e in range(200)])
    assert (boxes[:, 0] * 400).round().max() == 14 and (boxes[:, 1] * 40).round().max() == 14
    assert np.isclose(float(boxes[:, 0].max()), 14 / 400)
