"""The identity backbone: raw pixels as features."""

from __future__ import annotations

import torch
from torch import nn


class Pixels(nn.Module):
    """Flatten uint8 images N×C×H×W to float features N×(C·H·W) in [0, 1].

    The classical baselines (k-means, GMM on raw pixels, the MiCE table's first row) cluster
    exactly these features.
    """

    def __init__(self, name: str = "pixels") -> None:
        super().__init__()
        self.name = name

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.flatten(1).float()  # N×D
        return x / 255.0 if images.dtype == torch.uint8 else x
