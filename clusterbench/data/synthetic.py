"""Tiny generated images for tests and smoke runs, with a known class structure."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from clusterbench.data.dataset import join_splits
from clusterbench.data.folder import reject_root
from clusterbench.errors import ConfigError

TRAIN_SHARE = 5 / 6  # train = the first 5/6 of the images, test = the rest (as MNIST's 60k/10k)


def load_synthetic(
    root: Optional[str] = None,
    split: str = "all",
    download: bool = False,
    num_samples: int = 600,
    num_classes: int = 3,
    image_size: int = 8,
    channels: int = 1,
    noise: float = 0.15,
    data_seed: int = 0,
):
    """Each class is a smooth random pattern; each image is its class pattern, shifted by up
    to one pixel, with a random contrast and Gaussian pixel noise of std ``noise``.

    Classes are balanced and interleaved (label i mod K), so every split and subset holds all
    of them. The same arguments always give the same images: ``data_seed`` is separate from the
    run's ``seed`` so that seeds vary the method, not the data. A ``root`` is refused (it reads
    no files).
    """
    reject_root(root, "synthetic", "its images are generated in memory")
    for key, value, low in (("num_samples", num_samples, 2), ("num_classes", num_classes, 2), ("image_size", image_size, 4), ("channels", channels, 1)):
        if value < low:
            raise ConfigError(f"dataset.{key}", f"{value} is too small; use at least {low}")
    if num_samples < 2 * num_classes:
        raise ConfigError("dataset.num_samples", f"{num_samples} images cannot hold {num_classes} classes in both splits; use at least {2 * num_classes}")
    if noise < 0:
        raise ConfigError("dataset.noise", f"{noise} is negative; use a standard deviation ≥ 0")
    gen = np.random.default_rng(data_seed)
    coarse = gen.random((num_classes, channels, 4, 4))
    # upsample a 4×4 random grid: smooth patterns that survive a one-pixel shift
    patterns = torch.nn.functional.interpolate(torch.from_numpy(coarse), size=(image_size, image_size), mode="bilinear", align_corners=False).numpy()
    labels = np.arange(num_samples) % num_classes
    shifts = gen.integers(-1, 2, size=(num_samples, 2))
    contrast = gen.uniform(0.7, 1.0, size=(num_samples, 1, 1, 1))
    images = np.stack([np.roll(patterns[y], tuple(s), axis=(1, 2)) for y, s in zip(labels, shifts)])
    images = images * contrast + gen.normal(0.0, noise, size=images.shape)
    images = torch.from_numpy(np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8))
    labels_t = torch.from_numpy(labels.astype(np.int64))
    cut = max(num_classes, int(num_samples * TRAIN_SHARE))
    parts = {"train": (images[:cut], labels_t[:cut]), "test": (images[cut:], labels_t[cut:])}
    return join_splits("synthetic", parts, split, [f"class{i}" for i in range(num_classes)])
