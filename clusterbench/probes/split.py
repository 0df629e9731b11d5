"""A seeded, stratified train/test split for datasets without one (digits, a user's folder):
the probes need images they did not fit on."""

from __future__ import annotations

import numpy as np


def stratified_split(labels: np.ndarray, test_share: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and test indices: each class contributes round(share × its size) test images
    (at least one where it has two or more), chosen at random under ``seed``."""
    if not 0.0 < test_share < 1.0:
        raise ValueError(f"test share {test_share} must be in (0, 1)")
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        count = int(round(test_share * len(members)))
        count = min(max(count, 1 if len(members) > 1 else 0), len(members) - 1) if len(members) > 1 else 0
        test.append(rng.choice(members, size=count, replace=False))
    test_idx = np.sort(np.concatenate(test)) if test else np.zeros(0, np.int64)
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    return train_idx.astype(np.int64), test_idx.astype(np.int64)
