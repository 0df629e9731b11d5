"""A FIFO queue of L2-normalised features: MoCo's negatives (and PCL's, MiCE's per-expert ones)."""

from __future__ import annotations

import torch
from torch import nn


class FeatureQueue(nn.Module):
    """``size`` feature vectors of dimension ``dim``, oldest overwritten first.

    The queue starts full of random unit vectors and is used from the first step (MoCo's
    initialisation). It is a buffer, so it travels with ``state_dict`` into checkpoints. A batch
    that does not divide ``size`` is fine: writes wrap around the end.
    """

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("features", nn.functional.normalize(torch.randn(size, dim), dim=1))  # K×D
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    def __len__(self) -> int:
        return int(self.features.shape[0])

    @torch.no_grad()
    def push(self, keys: torch.Tensor) -> None:
        """Enqueue ``keys`` (B×D), dequeueing the oldest B (all of them if B ≥ size)."""
        size = len(self)
        keys = keys.detach().to(self.features.dtype)[-size:]  # a batch larger than the queue keeps its newest
        rows = (self.ptr + torch.arange(len(keys), device=keys.device)) % size
        self.features[rows] = keys
        self.ptr.copy_((self.ptr + len(keys)) % size)
