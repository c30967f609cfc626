"""Training and validation data for a run: sources, held-out split, caches, samplers, batches."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import torch
from torch.utils.data import DataLoader, Sampler

from csnet.data import DatasetConfig, DatasetError, SaliencyDataset, SampleCache, pair_dataset, split_pairs
from csnet.io.atomic import atomic_write_text
from csnet.train.config import TrainConfig
from csnet.train.distributed import DistInfo, barrier

__all__ = ["RunData", "EpochSampler", "build_data", "start_epoch", "train_batches"]

logger = logging.getLogger(__name__)

SPLIT_FILE = "split.json"


class EpochSampler(Sampler):
    """A shuffle decided by ``(seed, epoch)`` alone, sharded over DDP ranks; yields ``(epoch, index)``.

    Deciding the order from the epoch (not from a running RNG) makes a resumed run draw the same batches,
    and the ``(epoch, index)`` items let DataLoader workers (copies of the dataset) augment for the right
    epoch. Under DDP the permutation is padded by repeating its head to a multiple of the world size, as
    :class:`~torch.utils.data.DistributedSampler` does, so every rank runs the same number of steps.
    ``start`` skips the head of this rank's order: a run resumed mid-epoch draws the rest of the same order.
    """

    def __init__(self, n: int, seed: int, rank: int = 0, world_size: int = 1, shuffle: bool = True) -> None:
        self.n, self.seed, self.rank, self.world_size, self.shuffle = n, seed, rank, world_size, shuffle
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = int(epoch), int(start)

    def indices(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=generator).tolist()
        else:
            order = list(range(self.n))
        if self.world_size > 1:
            total = -(-self.n // self.world_size) * self.world_size
            order = (order * (total // max(1, len(order)) + 1))[:total]
            order = order[self.rank::self.world_size]
        return order[self.start:]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([(self.epoch, i) for i in self.indices()])

    def epoch_length(self) -> int:
        """Items this rank draws in a whole epoch (``len`` is what is left of it after ``start``)."""
        return -(-self.n // self.world_size) if self.world_size > 1 else self.n

    def __len__(self) -> int:
        return max(0, self.epoch_length() - self.start)


@dataclass
class RunData:
    train: SaliencyDataset
    val: Optional[SaliencyDataset]
    sampler: EpochSampler
    loader: Optional[DataLoader]


def _cache(config: TrainConfig, dataset_config: DatasetConfig, run_dir: Path) -> SampleCache:
    directory = None
    if config.cache == "disk":
        directory = Path(config.cache_dir) if config.cache_dir else run_dir / "cache"
    return SampleCache(dataset_config.resolved_cache_size, mask_threshold=dataset_config.mask_threshold,
                       directory=directory)


def teacher_pairs(config: TrainConfig, run_dir: Path, info: DistInfo, exclude=()) -> list:
    """Pairs of the unlabelled photos with the teacher's soft maps, labelling what is not labelled yet.

    Rank 0 labels (once: maps already in the label folder are reused, so a resumed or repeated run does
    not label again); the other ranks wait and read its list file. Validation images are never labelled.
    The pairs come back marked :attr:`~csnet.data.pairs.ImagePair.teacher` (by the list file's header), so the
    ``copy-paste`` recipe never pastes a teacher's map into another sample.
    """
    from csnet.distill import LABELS_FILE, OnnxTeacher, TeacherError, label_images

    folder = Path(config.label_dir) if config.label_dir else run_dir / "labels"
    if info.is_main:
        try:
            teacher = OnnxTeacher(config.teacher, threads=torch.get_num_threads())
            report = label_images(teacher, list(config.unlabeled), folder, exclude=exclude, progress=False)
        except TeacherError as error:
            raise DatasetError(str(error)) from None
        logger.info("teacher %s: %s", teacher.protocol.name, report.summary())
    barrier(info)
    return pair_dataset([str(folder / LABELS_FILE)])


def build_data(config: TrainConfig, run_dir: Path, info: DistInfo, device: torch.device,
               write_split: bool = True) -> RunData:
    """Decode the datasets once (cached), split off validation and make the training loader.

    With a disk cache, rank 0 decodes first and the other ranks then read its cache.
    """
    if not config.data:
        raise DatasetError("no training data given (--data DIR[,DIR])")
    soft = config.soft_masks or bool(config.teacher)
    train_cfg = DatasetConfig(size=config.size, augment=config.augment, augment_recipe=config.augment_recipe,
                              seed=config.seed,
                              mask_threshold=None if soft else 128)
    val_cfg = DatasetConfig(size=config.resolved_val_size, augment=False, seed=config.seed)
    decode_threads = max(1, config.workers)

    pairs = pair_dataset(list(config.data))
    val_pairs = []
    if config.val_fraction > 0:
        pairs, val_pairs = split_pairs(pairs, config.val_fraction, seed=config.split_seed)
        if not pairs:
            raise DatasetError(f"val_fraction {config.val_fraction} leaves no training pairs")
    elif config.val:
        val_pairs = pair_dataset(list(config.val))
    if config.teacher:
        pairs = pairs + teacher_pairs(config, run_dir, info, exclude=[p.image for p in val_pairs])
    if config.limit is not None and len(pairs) > config.limit:
        generator = torch.Generator().manual_seed(config.seed)
        pairs = [pairs[i] for i in sorted(torch.randperm(len(pairs), generator=generator)[:config.limit].tolist())]
    if write_split and info.is_main and config.val_fraction > 0:
        split = {"val_fraction": config.val_fraction, "split_seed": config.split_seed, "data": list(config.data),
                 "train": [p.key for p in pairs], "val": [p.key for p in val_pairs]}
        atomic_write_text(run_dir / SPLIT_FILE, json.dumps(split, indent=1) + "\n")

    def build() -> tuple[SaliencyDataset, Optional[SaliencyDataset]]:
        train = SaliencyDataset(pairs, train_cfg, cache=_cache(config, train_cfg, run_dir), workers=decode_threads)
        val = None
        if val_pairs and info.is_main:  # only rank 0 validates
            val = SaliencyDataset(val_pairs, val_cfg, cache=_cache(config, val_cfg, run_dir), workers=decode_threads)
        return train, val

    if config.cache == "disk" and info.enabled:
        if info.is_main:
            train, val = build()
        barrier(info)
        if not info.is_main:
            train, val = build()
    else:
        train, val = build()
    if info.is_main:
        logger.info("training on %d pairs%s", len(train), f", validating on {len(val)}" if val is not None
                    else " (no validation)")

    sampler = EpochSampler(len(train), config.seed, info.rank, info.world_size)
    loader = None
    if not (config.gpu_augment and device.type == "cuda"):
        # A generator of its own: otherwise each new iterator draws its workers' base seed from the global
        # torch RNG, and a run resumed mid-epoch (one iterator more) would leave that RNG one draw apart.
        loader = DataLoader(train, batch_size=config.batch_size, sampler=sampler, num_workers=config.workers,
                            pin_memory=device.type == "cuda", drop_last=False,
                            persistent_workers=config.workers > 0, generator=torch.Generator())
    return RunData(train, val, sampler, loader)


def start_epoch(data: RunData, epoch: int, start: int = 0) -> None:
    """Point the sampler, the augmentation and the loader at ``epoch``, skipping its first ``start`` items
    on this rank (a run resumed mid-epoch), so what follows is a function of ``(seed, epoch)`` alone."""
    data.sampler.set_epoch(epoch, start)
    data.train.set_epoch(epoch)
    if data.loader is not None and data.loader.generator is not None:
        data.loader.generator.manual_seed(data.sampler.seed * 1_000_003 + epoch)


class _GpuBatches:
    """Batches augmented on the accelerator from the whole cached dataset held there."""

    def __init__(self, data: RunData, batch_size: int, device: torch.device) -> None:
        self.data, self.batch_size, self.device = data, batch_size, device
        self.samples = data.train.uint8_tensor().to(device)
        self.augment = data.train.gpu_augment().to(device)

    def __len__(self) -> int:
        return -(-len(self.data.sampler) // self.batch_size)

    def __iter__(self):
        indices = self.data.sampler.indices()
        epoch = self.data.sampler.epoch
        for start in range(0, len(indices), self.batch_size):
            chunk = indices[start:start + self.batch_size]
            params = self.data.train.augment_params(chunk, epoch)
            donors = None
            if params.paste is not None:  # copy-paste: the donors come from the same tensor
                chosen = torch.tensor(params.paste.donor_indices, dtype=torch.int64, device=self.device)
                donors = self.samples[chosen]
            yield self.augment(self.samples[torch.tensor(chunk, device=self.device)], params, donors)


def train_batches(data: RunData, batch_size: int, device: torch.device):
    """An iterable of ``(images, masks)`` batches for the sampler's current epoch (has ``len``)."""
    if data.loader is not None:
        return data.loader
    return _GpuBatches(data, batch_size, device)
