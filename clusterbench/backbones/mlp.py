"""The fully connected encoder trunk of DEC / IDEC-style methods."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from clusterbench.backbones import check_input, check_int_list


class MLP(nn.Module):
    """Flatten, then per entry of ``hidden`` a Linear (+ BatchNorm1d) + ReLU; ``out_dim = hidden[-1]``.

    The default 500-500-2000 is DEC's encoder up to (not including) its linear 10-d embedding
    layer: that layer, like any projection, belongs to the method (see
    :func:`clusterbench.backbones.heads.projection_head`), so the trunk ends on a ReLU like
    every other backbone here.
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        name: str = "mlp",
        hidden: Sequence[int] = (500, 500, 2000),
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        in_channels, image_size = check_input(in_channels, image_size)
        hidden = check_int_list("backbone.hidden", hidden)
        self.name, self.in_channels, self.image_size = name, in_channels, image_size
        layers: list[nn.Module] = []
        d_in = in_channels * image_size * image_size
        for d in hidden:
            # No Linear bias under BatchNorm: the norm's shift replaces it.
            layers.append(nn.Linear(d_in, d, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(d))
            layers.append(nn.ReLU(inplace=True))
            d_in = d
        self.layers = nn.Sequential(*layers)
        self.out_dim = hidden[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # flatten() reads channels_last input in logical NCHW order, like the other backbones.
        return self.layers(x.flatten(1))
