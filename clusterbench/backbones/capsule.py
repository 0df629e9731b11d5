"""The Stacked Capsule Autoencoder's part encoder CNN: a feature map, not a vector.

SCAE (Kosiorek et al., NeurIPS 2019; the official MNIST configuration): four 3×3 convolutions of
128 channels, strides 2, 2, 1, 1, no padding (TensorFlow's VALID), a ReLU after each, no
normalisation. On the 40×40 MNIST canvas the map is 19 → 9 → 7 → 5 px: 5×5×128. The method's
capsule head (``clusterbench.methods.scae``) pools it into part capsules with one attention
map per capsule, so the backbone keeps the spatial map (``spatial = True``).

Small images (the 8×8 digits) vanish under VALID strides: ``padding: same`` keeps the map at
⌈size / stride⌉ per layer instead.
"""

from __future__ import annotations

import torch
from torch import nn

from clusterbench.backbones import check_input, check_int_list
from clusterbench.errors import ConfigError

PADDINGS = ("valid", "same")


def map_size(image_size: int, strides: list[int], padding: str, kernel: int = 3) -> int:
    """The side of the feature map after the convolutions."""
    for s in strides:
        image_size = -(-image_size // s) if padding == "same" else (image_size - kernel) // s + 1
    return image_size


class CapsuleConvNet(nn.Module):
    """Conv stack → B×``out_dim``×h×w map (``out_dim`` = the last width)."""

    spatial = True  # returns a map: the capsule head attends over its positions

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 40,
        name: str = "capsule",
        widths: tuple[int, ...] = (128, 128, 128, 128),
        strides: tuple[int, ...] = (2, 2, 1, 1),
        padding: str = "valid",
    ) -> None:
        super().__init__()
        in_channels, image_size = check_input(in_channels, image_size)
        widths, strides = check_int_list("backbone.widths", widths), check_int_list("backbone.strides", strides)
        if len(widths) != len(strides):
            raise ConfigError("backbone.strides", f"{len(strides)} strides for {len(widths)} widths; give one stride per layer")
        padding = str(getattr(padding, "value", padding))
        if padding not in PADDINGS:
            raise ConfigError("backbone.padding", f"'{padding}' is not one of {', '.join(PADDINGS)}")
        self.name, self.in_channels, self.image_size = name, in_channels, image_size
        self.widths, self.strides, self.padding = widths, strides, padding
        if map_size(image_size, strides, padding) < 1:
            raise ConfigError("backbone.strides", f"{image_size}-px images vanish under strides {strides} with {padding} padding; "
                              "use backbone.padding=same or smaller strides")
        layers: list[nn.Module] = []
        channels = in_channels
        for width, stride in zip(widths, strides):
            # 'same' with a stride: TensorFlow pads the far side more; padding 1 on 3×3 gives ⌈n/s⌉ too
            layers += [nn.Conv2d(channels, width, 3, stride=stride, padding=1 if padding == "same" else 0), nn.ReLU()]
            channels = width
        self.net = nn.Sequential(*layers)
        self.out_dim = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
