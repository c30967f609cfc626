"""Datasets: finding image/mask pairs, checking them, caching decoded samples, augmentation.

Typical training use::

    pairs, report = scan_dataset("DUTS-TR,HumanSeg", cache=cache)   # one decode pass
    train, val = split_pairs(pairs, val_fraction=0.05, seed=0)
    dataset = SaliencyDataset(train, DatasetConfig(), cache=cache)  # no decoding left
"""
from csnet.constants import IMAGENET_MEAN, IMAGENET_STD
from csnet.data.augment import AugmentParams, GpuAugment, augment_batch, sample_augment_params
from csnet.data.cache import SampleCache, SampleMeta, resize_sample
from csnet.data.dataset import DatasetConfig, SaliencyDataset
from csnet.data.pairs import (
    LAYOUTS,
    DatasetError,
    ImagePair,
    Pairing,
    collect_pairs,
    detect_layout,
    pair_dataset,
    read_list_file,
    split_pairs,
)
from csnet.data.scan import DatasetScan, ScanReport, check_pairs, normalize_mask, scan_dataset

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "LAYOUTS",
    "AugmentParams", "DatasetConfig", "DatasetError", "DatasetScan", "GpuAugment", "ImagePair",
    "Pairing", "SaliencyDataset", "SampleCache", "SampleMeta", "ScanReport",
    "augment_batch", "check_pairs", "collect_pairs", "detect_layout", "normalize_mask",
    "pair_dataset", "read_list_file", "resize_sample", "sample_augment_params", "scan_dataset",
    "split_pairs",
]
