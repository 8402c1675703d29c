"""Data: IDX files, MNIST / Fashion-MNIST, generated datasets and splits (host side, NumPy),
and ``DeviceLoader``, which puts a dataset on a backend's device and batches it there."""

from .datasets import (
    DATASETS,
    Dataset,
    DatasetIntegrityError,
    DatasetNotFoundError,
    cache_dir,
    candidate_dirs,
    disc,
    find_files,
    load_dataset,
    load_idx_dir,
    synthetic,
    train_val_split,
)
from .idx import read_idx, write_idx
from .loader import DeviceLoader

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetIntegrityError",
    "DatasetNotFoundError",
    "DeviceLoader",
    "cache_dir",
    "candidate_dirs",
    "disc",
    "find_files",
    "load_dataset",
    "load_idx_dir",
    "synthetic",
    "train_val_split",
    "read_idx",
    "write_idx",
]
