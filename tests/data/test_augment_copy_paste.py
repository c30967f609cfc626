"""The ``copy-paste`` augmentation recipe: a ground-truth pair's object pasted onto the release crop, its soft
mask the alpha, every draw from ``(seed, epoch, index)`` alone."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from csnet.data import DatasetConfig, SaliencyDataset, pair_dataset
from csnet.data.augment import (FLIP_HORIZONTAL, AugmentParams, CopyPasteAugment, GpuAugment, PasteParams,
                                augment_batch, sample_augment_params, sample_paste_params)
from csnet.data.pairs import TEACHER_LIST_HEADER
from csnet.train.config import ConfigError, TrainConfig
from tests.data.conftest import make_dataset, write_pair

S = 32
ZERO, ONE = torch.zeros(3), torch.ones(3)  # no normalization: images stay in [0, 1]


def _sample(seed: int, mask: np.ndarray) -> torch.Tensor:
    """``(1, 4, S, S)`` uint8: smooth random RGB (bilinear resampling of it is well behaved) and ``mask``."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.uniform(0, 255, (1, 3, S // 4, S // 4))).float()
    rgb = F.interpolate(coarse, size=(S, S), mode="bicubic", align_corners=False).clamp(0, 255).round()
    return torch.cat([rgb, torch.from_numpy(mask).float()[None, None]], 1).to(torch.uint8)


def _paste(scale: float, x: float, y: float, flip: int = 0) -> AugmentParams:
    """Identity geometry for the base sample, one donor pasted at ``scale`` and ``(x, y)``."""
    crops = AugmentParams(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([flip]))
    paste = PasteParams(torch.tensor([7]), torch.tensor([scale]), torch.tensor([[x, y]]), crops)
    identity = AugmentParams.identity(1)
    return AugmentParams(identity.boxes, identity.flips, paste=paste)


def _block_mask(top: int, left: int, side: int) -> np.ndarray:
    mask = np.zeros((S, S), np.uint8)
    mask[top:top + side, left:left + side] = 255
    return mask


def test_pasted_object_equals_the_donor_where_alpha_is_one_and_the_rest_is_untouched():
    base = _sample(0, _block_mask(10, 2, 10))
    donor = _sample(1, _block_mask(8, 6, 16))
    images, masks = augment_batch(base, _paste(0.5, 0.25, 0.75), S, ZERO, ONE, donor)
    plain_images, plain_masks = augment_batch(base, AugmentParams.identity(1), S, ZERO, ONE)
    # Side round(0.5 * 32) = 16; of the 17 placements, x = 0.25 picks the 5th, y = 0.75 the 13th.
    side, left, top = 16, 4, 12
    small = F.interpolate(donor.float(), size=(side, side), mode="bilinear", align_corners=False) / 255
    alpha = small[0, 3]
    inside = torch.zeros(S, S, dtype=torch.bool)
    inside[top:top + side, left:left + side] = alpha == 1.0
    assert inside.sum() >= 36  # the donor's block, halved, is opaque over a 6 x 6 square at least
    region = images[0, :, top:top + side, left:left + side]
    assert torch.allclose(region[:, alpha == 1.0], small[0, :3][:, alpha == 1.0], atol=1e-6)
    assert torch.equal(masks[0, 0][inside], torch.ones(int(inside.sum())))
    untouched = torch.ones(S, S, dtype=torch.bool)
    untouched[top:top + side, left:left + side] = False
    assert torch.equal(images[0][:, untouched], plain_images[0][:, untouched])
    assert torch.equal(masks[0, 0][untouched], plain_masks[0, 0][untouched])
    # The base's own object keeps its mask inside the pasted square, where the donor is transparent.
    assert float(alpha[:3].max()) == 0.0 and masks[0, 0, 12:15, 4:12].min() == 1.0


def test_soft_alpha_blends_the_image_and_keeps_the_larger_mask():
    rng = np.random.default_rng(3)
    base = _sample(4, rng.integers(0, 256, (S, S), dtype=np.uint8))
    donor = _sample(5, rng.integers(0, 256, (S, S), dtype=np.uint8))
    images, masks = augment_batch(base, _paste(1.0, 0.0, 0.0, FLIP_HORIZONTAL), S, ZERO, ONE, donor)
    b = base[0].float() / 255
    d = donor[0].float().flip(-1) / 255  # a full-frame paste of the horizontally flipped donor
    alpha = d[3:]
    assert 0.1 < float(alpha.mean()) < 0.9 and ((alpha > 0) & (alpha < 1)).float().mean() > 0.9
    assert torch.allclose(images[0], alpha * d[:3] + (1 - alpha) * b[:3], atol=1e-5)
    assert torch.allclose(masks[0], torch.maximum(alpha, (1 - alpha) * b[3:]), atol=1e-5)
    assert not torch.allclose(masks[0], alpha, atol=1e-3)  # the base mask counts where it is larger


def test_paste_draws_are_reproducible_ranged_and_leave_the_release_crops_alone():
    sizes = [(S, S)] * 300
    donors = list(range(0, 300, 2))
    a = sample_paste_params(4, 2, [9, 3, 8], donors, sizes)
    b = sample_paste_params(4, 2, [3, 8, 9], donors, sizes)
    for name in ("donors", "scales", "positions"):
        assert torch.equal(getattr(a, name), getattr(b, name)[[2, 0, 1]]), name  # per sample, not per batch
    many = sample_paste_params(4, 2, range(300), donors, sizes)
    pasted = many.donors >= 0
    assert 0.4 < float(pasted.float().mean()) < 0.6
    assert set(many.donors[pasted].tolist()) <= set(donors)
    assert not (many.donors == torch.arange(300)).any()  # never the sample's own object
    assert many.scales.min() >= 0.5 and many.scales.max() <= 1.0 and many.scales.std() > 0.1
    assert many.positions.min() >= 0.0 and many.positions.max() <= 1.0
    # The donor is cropped and flipped as its own sample is, that epoch.
    rows = pasted.nonzero().flatten().tolist()
    own = sample_augment_params(4, 2, many.donors[rows].tolist(), [(S, S)] * len(rows))
    assert torch.equal(many.crops.boxes[rows], own.boxes) and torch.equal(many.crops.flips[rows], own.flips)
    other = sample_paste_params(4, 3, range(300), donors, sizes)
    assert not torch.equal(other.donors, many.donors) and not torch.equal(other.scales, many.scales)


def test_paste_draws_are_pinned():
    """A resumed run on another machine or a later release must paste the same; the stream is its own (the
    release crop stream, or another epoch, would give other values)."""
    p = sample_paste_params(1, 2, range(6), range(10), [(300, 200)] * 10)
    assert p.donors.tolist() == [6, 5, -1, -1, -1, -1]
    assert [round(v, 4) for v in p.scales.tolist()] == [0.9932, 0.8345, 0.7555, 0.6994, 0.6848, 0.5904]
    assert [round(v, 4) for v in p.positions[:2].flatten().tolist()] == [0.1421, 0.8305, 0.7068, 0.3302]


def test_dataset_samples_depend_on_seed_epoch_index_alone(tmp_path: Path):
    """Same ``(seed, epoch, index)``: the same sample from a fresh dataset (a resumed run), from the batched
    path the GPU trainer runs (here on the CPU) and from DataLoader-style single items; another epoch differs;
    the base crop and flip are those of ``release``."""
    from csnet.train.data import EpochSampler, RunData, _GpuBatches

    data = make_dataset(tmp_path / "GT", n=6, size=(S, S))
    config = DatasetConfig(size=S, augment_recipe="copy-paste", seed=3)
    dataset = SaliencyDataset(pair_dataset([str(data)]), config, workers=1)
    again = SaliencyDataset(pair_dataset([str(data)]), config, workers=1)
    release = SaliencyDataset(pair_dataset([str(data)]), DatasetConfig(size=S, seed=3), workers=1)
    epoch = 2
    params = dataset.augment_params(range(6), epoch)
    assert params.paste is not None and 0 < len(params.paste.donor_indices) < 6  # some pasted, some not
    base = release.augment_params(range(6), epoch)
    assert torch.equal(params.boxes, base.boxes) and torch.equal(params.flips, base.flips)
    items = [dataset[(epoch, i)] for i in range(6)]
    for i, (image, mask) in enumerate(items):
        image2, mask2 = again[(epoch, i)]
        assert torch.equal(image, image2) and torch.equal(mask, mask2)
    pasted = [i for i, d in enumerate(params.paste.donors.tolist()) if d >= 0]
    plain = [i for i in range(6) if i not in pasted]
    assert all(torch.equal(items[i][0], release[(epoch, i)][0]) for i in plain)
    assert all(not torch.equal(items[i][0], release[(epoch, i)][0]) for i in pasted)

    sampler = EpochSampler(6, 3, shuffle=False)
    sampler.set_epoch(epoch)
    batches = _GpuBatches(RunData(dataset, None, sampler, None), 4, torch.device("cpu"))
    batch_images = torch.cat([images for images, _ in batches])
    for i, (image, _) in enumerate(items):
        assert torch.allclose(image, batch_images[i], atol=1e-5)
    module_images, _ = GpuAugment(S)(dataset.uint8_tensor(), params,
                                      dataset.uint8_tensor()[params.paste.donor_indices])
    assert torch.allclose(module_images, batch_images, atol=1e-5)

    later = dataset.augment_params(range(6), epoch + 1)
    assert not torch.equal(later.paste.scales, params.paste.scales)
    assert any(not torch.equal(dataset[(epoch + 1, i)][0], items[i][0]) for i in range(6))


def _teacher_list(folder: Path, n: int) -> Path:
    """A label list as ``csnet label`` writes it: header line, then ``image<TAB>map`` lines."""
    lines = [f"{TEACHER_LIST_HEADER} tiny (sha256 0123456789ab)"]
    for i in range(n):
        image, mask = write_pair(folder, f"t{i}", image_dir="photos", mask_dir="maps", size=(S, S),
                                 mask=np.full((S, S), 100 + 20 * i, np.uint8))
        lines.append(f"{image.resolve()}\t{mask.relative_to(folder).as_posix()}")
    path = folder / "labels.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_donors_are_never_teacher_soft_maps(tmp_path: Path):
    gt = make_dataset(tmp_path / "GT", n=3, size=(S, S))
    labels = _teacher_list(tmp_path / "labels", 5)
    plain_list = labels.parent / "mine.txt"
    plain_list.write_text("# my own ground truth\n" + "\n".join(labels.read_text().splitlines()[1:]) + "\n")
    pairs = pair_dataset([str(gt), str(labels)])
    assert [p.teacher for p in pairs] == [False] * 3 + [True] * 5
    assert not any(p.teacher for p in pair_dataset([str(plain_list)]))  # a list without the header is ground truth
    config = DatasetConfig(size=S, augment_recipe="copy-paste", mask_threshold=None)
    dataset = SaliencyDataset(pairs, config, workers=1)
    assert dataset.donors == [0, 1, 2]
    chosen = set()
    for epoch in range(20):
        chosen |= set(dataset.augment_params(range(len(dataset)), epoch).paste.donor_indices)
    assert chosen == {0, 1, 2}


def test_csnet_label_lists_are_marked_teacher(tmp_path: Path):
    """The header the labeller really writes is the one the reader looks for."""
    pytest.importorskip("onnxruntime")
    from csnet.distill import LABELS_FILE, OnnxTeacher, label_images
    from tests.distill.test_teacher import make_photos, make_teacher

    teacher = OnnxTeacher(make_teacher(tmp_path / "t"), runtime="onnxruntime")
    label_images(teacher, [make_photos(tmp_path / "photos", n=2)], tmp_path / "labels", progress=False)
    pairs = pair_dataset([str(tmp_path / "labels" / LABELS_FILE)])
    assert len(pairs) == 2 and all(p.teacher for p in pairs)


def test_without_ground_truth_the_recipe_changes_nothing(tmp_path: Path):
    pairs = pair_dataset([str(_teacher_list(tmp_path / "labels", 4))])
    recipe = SaliencyDataset(pairs, DatasetConfig(size=S, augment_recipe="copy-paste", mask_threshold=None),
                             workers=1)
    release = SaliencyDataset(pairs, DatasetConfig(size=S, mask_threshold=None), workers=1)
    assert recipe.donors == []
    for epoch in range(3):
        assert recipe.augment_params(range(4), epoch).paste.donor_indices == []
        for i in range(4):
            image, mask = recipe[(epoch, i)]
            want_image, want_mask = release[(epoch, i)]
            assert torch.equal(image, want_image) and torch.equal(mask, want_mask)
    # One ground-truth pair: it is everyone's donor but never its own.
    lone = sample_paste_params(0, 0, range(200), [5], [(S, S)] * 200)
    assert set(lone.donor_indices) == {5} and lone.donors[5] == -1


def test_configs_accept_copy_paste_and_refuse_unknown_recipes():
    assert DatasetConfig(augment_recipe="copy-paste").augment_recipe == "copy-paste"
    restored = DatasetConfig.from_dict(DatasetConfig(augment_recipe="copy-paste").to_dict())
    assert restored.augment_recipe == "copy-paste"
    assert TrainConfig(augment_recipe="copy-paste", gpu_augment=True).augment_recipe == "copy-paste"
    with pytest.raises(ValueError, match="augment_recipe"):
        DatasetConfig(augment_recipe="copy_paste")
    with pytest.raises(ConfigError, match="augment_recipe"):
        TrainConfig(augment_recipe="cut-paste")
    from csnet.cli.main import build_parser
    from csnet.cli.train import _overrides

    args = build_parser().parse_args(["train", "--data", "x", "--augment-recipe", "copy-paste"])
    assert TrainConfig().replace(**_overrides(args)).augment_recipe == "copy-paste"
    with pytest.raises(ValueError, match="scale"):
        CopyPasteAugment(scale=(0.5, 1.5))
    with pytest.raises(ValueError, match="donors"):
        augment_batch(_sample(0, _block_mask(0, 0, 4)), _paste(0.5, 0.0, 0.0), S, ZERO, ONE)
