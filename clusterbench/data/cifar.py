"""CIFAR-10 and CIFAR-100 from the python pickles in torchvision's layout.

Each data file is a Python-2 protocol-2 pickle of a dict: ``data`` is a uint8 array N×3072
— per image the 1024 red values, then 1024 green, then 1024 blue, each a 32×32 row-major
plane — so a plain reshape gives N×3×32×32 with no transpose. Files are checked for
structure (keys, shapes, counts, label range), never md5: re-packed but exact copies, such
as one whose ``filenames`` were re-created, must load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from clusterbench.data.dataset import ImageDataset, check_split, join_splits
from clusterbench.data.files import (
    corrupt,
    data_root,
    decode_names,
    ensure_files,
    fetch_hint,
    label_array,
    load_pickle,
    require_keys,
)
from clusterbench.errors import ConfigError

PIXELS = 3 * 32 * 32

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
CIFAR10_META = "batches.meta"

CIFAR100_FOLDER = "cifar-100-python"
CIFAR100_FILES = {"train": ["train"], "test": ["test"]}
CIFAR100_META = "meta"
# targets -> (label key in the data files, class-name key in meta, class count)
CIFAR100_TARGETS = {"coarse": ("coarse_labels", "coarse_label_names", 20), "fine": ("fine_labels", "fine_label_names", 100)}


def read_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch's N×3×32×32 images and N labels, structure-checked."""
    batch = load_pickle(path)
    require_keys(path, batch, ["data", label_key])
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != PIXELS:
        found = f"{data.dtype} {'×'.join(map(str, data.shape))}" if isinstance(data, np.ndarray) else type(data).__name__
        raise corrupt(path, f"data must be uint8 N×{PIXELS}, found {found}")
    labels = label_array(path, batch[label_key], len(data), num_classes, what=label_key)
    return data.reshape(-1, 3, 32, 32), labels


def read_parts(
    files: dict[str, Path], splits: Sequence[str], names: dict[str, list[str]], label_key: str, num_classes: int
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{split: (images, labels)}``, each split the concatenation of its batch files."""
    parts = {}
    for split in splits:
        batches = [read_batch(files[name], label_key, num_classes) for name in names[split]]
        images = np.concatenate([b[0] for b in batches]) if len(batches) > 1 else np.ascontiguousarray(batches[0][0])
        labels = np.concatenate([b[1] for b in batches])
        parts[split] = (torch.from_numpy(images), torch.from_numpy(labels))
    return parts


def read_meta(path: Path, key: str, count: int) -> list[str]:
    """The class names under ``key`` in a meta pickle, checked to number ``count``."""
    meta = load_pickle(path)
    require_keys(path, meta, [key])
    return decode_names(path, meta[key], count, what=key)


def splits_of(split: str) -> list[str]:
    check_split(split)
    return ["train", "test"] if split == "all" else [split]


def _load(name: str, folder_name: str, file_names: dict[str, tuple[str, ...]], meta: str, torchvision_class: str,
          root: str, split: str, download: bool, label_key: str, names_key: str, num_classes: int) -> ImageDataset:
    """What both CIFARs do: find (or fetch) the pickles the split needs, read, check, join."""
    splits = splits_of(split)
    base = data_root(root)
    folder = base / folder_name
    needed = [f for s in splits for f in file_names[s]] + [meta]

    def fetch() -> None:
        import torchvision.datasets

        getattr(torchvision.datasets, torchvision_class)(str(base), train=True, download=True)

    files = ensure_files(base, folder, needed, name, fetch_hint(folder_name), download, fetch)
    class_names = read_meta(files[meta], names_key, num_classes)
    parts = read_parts(files, splits, file_names, label_key, num_classes)
    return join_splits(name, parts, split, class_names)


def load_cifar10(root: str, split: str = "all", download: bool = False) -> ImageDataset:
    """CIFAR-10's 60,000 (train 50k + test 10k) 3×32×32 images in 10 classes;
    ``split=all`` is train then test. Only the batches the split needs are read."""
    return _load("cifar10", CIFAR10_FOLDER, CIFAR10_FILES, CIFAR10_META, "CIFAR10", root, split, download, "labels", "label_names", 10)


def load_cifar100(root: str, split: str = "all", download: bool = False, targets: str = "coarse") -> ImageDataset:
    """CIFAR-100's 60,000 3×32×32 images with either its 20 super-class (``coarse``, the
    clustering benchmarks' choice) or its 100 class (``fine``) labels."""
    target = getattr(targets, "value", targets)  # the config's str-Enum or a plain string
    if target not in CIFAR100_TARGETS:
        raise ConfigError("dataset.targets", f"'{target}' is not a CIFAR-100 label set; use coarse or fine")
    label_key, names_key, num_classes = CIFAR100_TARGETS[target]
    data = _load("cifar100", CIFAR100_FOLDER, CIFAR100_FILES, CIFAR100_META, "CIFAR100", root, split, download, label_key, names_key, num_classes)
    data.info["targets"] = target
    return data
