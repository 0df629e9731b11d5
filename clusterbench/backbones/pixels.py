"""The identity backbone: raw pixels as features."""

from __future__ import annotations

import torch
from torch import nn

from clusterbench.backbones import check_input


class Pixels(nn.Module):
    """Flatten images N×C×H×W to features N×(C·H·W); uint8 is scaled to [0, 1].

    The classical baselines (k-means, GMM on raw pixels, the MiCE table's first row) cluster
    exactly these features. ``in_channels`` and ``image_size`` are only recorded (for
    ``out_dim``): flattening works for any shape, so the defaults keep old callers working.
    """

    def __init__(self, in_channels: int = 1, image_size: int = 8, name: str = "pixels") -> None:
        super().__init__()
        self.in_channels, self.image_size = check_input(in_channels, image_size)
        self.name = name
        self.out_dim = self.in_channels * self.image_size * self.image_size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.flatten(1).float()  # N×D
        return x / 255.0 if images.dtype == torch.uint8 else x
