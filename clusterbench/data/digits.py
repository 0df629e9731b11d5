"""scikit-learn's bundled 8×8 handwritten digits: real data that needs no download."""

from __future__ import annotations

from typing import Optional

import numpy as np
import sklearn.datasets
import torch

from clusterbench.data.dataset import ImageDataset, check_split
from clusterbench.data.folder import reject_root
from clusterbench.errors import DatasetError


def load_digits(root: Optional[str] = None, split: str = "all", download: bool = False) -> ImageDataset:
    """1,797 images, 1×8×8, ten classes. Pixel values 0–16 are scaled to 0–255.

    The set has no train/test division, so only ``split=all`` exists. ``download`` is accepted
    for a uniform loader signature and not used; a ``root`` is refused (it reads no files).
    """
    reject_root(root, "digits", "it ships with scikit-learn")
    check_split(split, available=())
    bunch = sklearn.datasets.load_digits()
    raw = np.asarray(bunch.images)  # N×8×8 floats, integers 0..16
    if raw.min() < 0 or raw.max() > 16:
        raise DatasetError("scikit-learn's digits data is damaged (values outside 0–16); reinstall scikit-learn")
    images = np.rint(raw * (255.0 / 16.0)).astype(np.uint8)[:, None]  # N×1×8×8
    labels = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    return ImageDataset("digits", torch.from_numpy(images), labels, [str(i) for i in range(10)], split)
