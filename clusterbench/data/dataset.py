"""The in-memory image dataset every loader returns, and the split / subset protocol.

Images are held as one uint8 tensor N×C×H×W with int64 labels: a whole benchmark dataset
(60k CIFAR images = 184 MB) fits in memory, and later the training device, as one block.
Labels are for the evaluator only; no method may read them. A user's own images may have
no labels at all (``labels=None``): such a run is scored by internal indices instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional, Sequence

import numpy as np
import torch

from clusterbench.errors import ConfigError

SPLITS = ("all", "train", "test")


@dataclass
class ImageDataset:
    """Images to cluster, their true labels, and the protocol they were taken under.

    ``unlabeled`` holds extra training-only images (STL-10's unlabeled split): methods may
    fit on them, but they are never predicted or evaluated.
    """

    name: str
    images: torch.Tensor  # N×C×H×W uint8
    labels: Optional[torch.Tensor]  # N int64, values in [0, num_classes); None: no labels
    class_names: list[str]  # [] when there are no labels
    split: str
    unlabeled: Optional[torch.Tensor] = None  # M×C×H×W uint8, training only
    info: dict = field(default_factory=dict)
    names: Optional[list[str]] = None  # per image: its path relative to the root, or its name
    # per image: True where it comes from the dataset's test split (``split=all`` joins train and
    # test); None for a dataset without splits. The probes' train → test protocol reads it.
    from_test: Optional[torch.Tensor] = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 N×C×H×W, got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels is not None:
            if self.labels.shape != (self.images.shape[0],):
                raise ValueError(f"{self.images.shape[0]} images but labels of shape {tuple(self.labels.shape)}")
            self.labels = self.labels.to(torch.int64)
        elif self.class_names:
            raise ValueError("an unlabelled dataset has no class names")
        if self.names is not None and len(self.names) != self.images.shape[0]:
            raise ValueError(f"{self.images.shape[0]} images but {len(self.names)} names")
        if self.from_test is not None and self.from_test.shape != (self.images.shape[0],):
            raise ValueError(f"{self.images.shape[0]} images but a test-split marker of shape {tuple(self.from_test.shape)}")
        if self.unlabeled is not None and self.unlabeled.shape[1:] != self.images.shape[1:]:
            raise ValueError("unlabeled images must have the labeled images' C×H×W")

    @property
    def has_labels(self) -> bool:
        return self.labels is not None

    @property
    def num_classes(self) -> int:
        """The class count (0 for an unlabelled dataset)."""
        return len(self.class_names)

    def label_array(self) -> Optional[np.ndarray]:
        """The labels as int64 NumPy, or None: what the evaluator takes."""
        return None if self.labels is None else self.labels.numpy()

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def train_images(self) -> torch.Tensor:
        """Everything a method may fit on: the evaluated images plus any unlabeled extras."""
        if self.unlabeled is None or len(self.unlabeled) == 0:
            return self.images
        return torch.cat([self.images, self.unlabeled])


def join_splits(
    name: str,
    parts: dict[str, tuple[torch.Tensor, torch.Tensor]],
    split: str,
    class_names: Sequence[str],
    unlabeled: Optional[torch.Tensor] = None,
) -> ImageDataset:
    """Build the dataset for ``split`` from a loader's ``{"train": (x, y), "test": (x, y)}``.

    ``all`` is train followed by test: the usual clustering protocol.
    """
    check_split(split, available=tuple(parts))
    keys = list(parts) if split == "all" else [split]
    images = torch.cat([parts[k][0] for k in keys]) if len(keys) > 1 else parts[keys[0]][0]
    labels = torch.cat([parts[k][1] for k in keys]) if len(keys) > 1 else parts[keys[0]][1]
    from_test = torch.cat([torch.full((len(parts[k][0]),), k == "test") for k in keys])
    return ImageDataset(name, images, labels, list(class_names), split, unlabeled, from_test=from_test if "test" in parts else None)


def check_split(split: str, available: Sequence[str] = ("train", "test")) -> None:
    """Reject a split the dataset does not have, naming the ones it has."""
    valid = ["all", *[s for s in SPLITS[1:] if s in available]]
    if split not in valid:
        raise ConfigError("dataset.split", f"'{split}' is not a split of this dataset; use {' or '.join(valid)}")


def stratified_subset(data: ImageDataset, limit: Optional[int], seed: int) -> ImageDataset:
    """Keep ``limit`` images with the class proportions of the full set (for quick runs).

    Each class gets floor(limit·share) images, and the remainder goes to the classes with the
    largest fractional parts, so the total is exactly ``limit``. The kept images stay in
    their original order. Unlabeled extras are cut to at most ``limit`` as well.
    """
    if limit is None or limit >= len(data):
        return data
    gen = np.random.default_rng(seed)
    if data.labels is None:  # nothing to stratify by: a uniform random subset
        return _subset(data, np.sort(gen.choice(len(data), size=limit, replace=False)), gen, limit)
    if limit < data.num_classes:
        raise ConfigError("dataset.limit", f"{limit} is fewer than the {data.num_classes} classes; use at least {data.num_classes}")
    labels = data.labels.numpy()
    counts = np.bincount(labels, minlength=data.num_classes)
    quota = counts * limit / len(labels)
    take = np.floor(quota).astype(np.int64)
    remainder = limit - int(take.sum())
    take[np.argsort(-(quota - take), kind="stable")[:remainder]] += 1
    keep = np.concatenate(
        [gen.choice(np.flatnonzero(labels == c), size=int(take[c]), replace=False) for c in range(data.num_classes)]
    )
    return _subset(data, np.sort(keep), gen, limit)


def _subset(data: ImageDataset, keep: np.ndarray, gen: np.random.Generator, limit: int) -> ImageDataset:
    """The images ``keep`` (sorted indices), with their labels and names; unlabeled extras
    are cut to at most ``limit`` as well."""
    rows = torch.from_numpy(keep)
    unlabeled = data.unlabeled
    if unlabeled is not None and len(unlabeled) > limit:
        unlabeled = unlabeled[torch.from_numpy(np.sort(gen.choice(len(unlabeled), size=limit, replace=False)))]
    labels = None if data.labels is None else data.labels[rows]
    names = None if data.names is None else [data.names[i] for i in keep]
    from_test = None if data.from_test is None else data.from_test[rows]
    return replace(data, images=data.images[rows], labels=labels, unlabeled=unlabeled, names=names, from_test=from_test)
