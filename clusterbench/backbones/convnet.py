"""Small convolutional backbones: the MNIST reference ConvNet and a strided all-conv net."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from clusterbench.backbones import check_input, check_int_list, check_positive_int
from clusterbench.errors import ConfigError

# At or above this size ConvNet uses the reference's unpadded convs; below it, padding 1.
CONVNET_UNPADDED_FROM = 16
# At or below this size StridedConvNet's first conv keeps stride 1.
STRIDED_FIRST_STRIDE1_UP_TO = 16


class ConvNet(nn.Module):
    """The MNIST reference study's net (PyTorch's classic MNIST example), without its classifier.

    conv3×3(in→channels[0]) ReLU, conv3×3(channels[0]→channels[1]) ReLU, max-pool 2, dropout,
    flatten, FC → ``hidden``, ReLU. ``out_dim = hidden``.

    Padding: 0 when ``image_size ≥ 16``, 1 below. Unpadded convs reproduce the reference
    exactly at 28 px (28 → 24 → pool 12, a 9216-input FC, 1.2 M parameters), so numbers stay
    comparable with the study; on 8×8 digits they would throw away the border ring twice and
    leave a 2×2 map after pooling, while padding 1 keeps 8 → 8 → pool 4 (4×4). The FC input
    size is computed from ``image_size``, so any size ≥ 2 works.
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        name: str = "convnet",
        channels: Sequence[int] = (32, 64),
        hidden: int = 128,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        in_channels, image_size = check_input(in_channels, image_size)
        channels = check_int_list("backbone.channels", channels)
        if len(channels) != 2:
            raise ConfigError("backbone.channels", f"{channels} has {len(channels)} entries; the reference net has exactly two convs, e.g. [32, 64]")
        hidden = check_positive_int("backbone.hidden", hidden)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ConfigError("backbone.dropout", f"{dropout!r} is not a probability in [0, 1); use e.g. 0.25 (the reference) or 0")
        self.name, self.in_channels, self.image_size = name, in_channels, image_size
        self.padding = 0 if image_size >= CONVNET_UNPADDED_FROM else 1
        pooled = (image_size - 4 + 4 * self.padding) // 2  # two 3×3 convs, then max-pool 2
        if pooled < 1:
            raise ConfigError("backbone.image_size", f"{image_size}-px images vanish in this net; it needs images of at least 2 px")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, channels[0], 3, padding=self.padding),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels[0], channels[1], 3, padding=self.padding),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Dropout(float(dropout)),
        )
        self.fc = nn.Linear(channels[1] * pooled * pooled, hidden)
        self.out_dim = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # flatten() on a channels_last map copies into NCHW order, so the FC sees the same
        # feature order (and the same output) whichever memory format came in.
        return torch.relu(self.fc(self.features(x).flatten(1)))


def auto_widths(image_size: int, first: int = 32, cap: int = 256) -> list[int]:
    """Stage widths for ``image_size``: 32, 64, ... (at most ``cap``), one per halving down to 2 px.

    Why: with too few stages the receptive field is a fraction of the image and average
    pooling makes a bag of local strokes — on 28-px MNIST the 3-stage net's 15-px field gave
    MoCo 31% clustering ACC, the 4-stage one 68% (benchmarks/deep_mnist.py). 8 px (digits):
    [32, 64, 128] (a stride-1 stage first); 28 and 32 px: [32, 64, 128, 256].
    """
    size, widths = image_size, []
    if image_size <= STRIDED_FIRST_STRIDE1_UP_TO:
        widths.append(first)  # the stride-1 stage keeps the size
    while size > 2 or not widths:
        size = (size - 1) // 2 + 1
        widths.append(min(first * 2 ** len(widths), cap))
    return widths


class StridedConvNet(nn.Module):
    """Per width a 3×3 conv (stride 2, padding 1) + BatchNorm + ReLU, then global average pooling.

    ``out_dim = widths[-1]``. For images ≤ 16 px the first conv keeps stride 1: on 8×8 digits
    three stride-2 stages would leave a 1×1 map (8 → 4 → 2 → 1), i.e. the last conv would see
    nothing but padding around one pixel; with stride 1 first it is 8 → 4 → 2. Larger images
    (MNIST, CIFAR, STL) afford halving from the start, which keeps the cost low.

    ``widths=None`` sizes the net to the image (``auto_widths``): stages until the map is 2 px,
    so the last stage's receptive field covers the whole image before the pooling.
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        name: str = "strided",
        widths: Optional[Sequence[int]] = None,
    ) -> None:
        super().__init__()
        in_channels, image_size = check_input(in_channels, image_size)
        widths = auto_widths(image_size) if widths is None else check_int_list("backbone.widths", widths)
        self.name, self.in_channels, self.image_size = name, in_channels, image_size
        layers: list[nn.Module] = []
        size, c_in = image_size, in_channels
        for i, width in enumerate(widths):
            stride = 1 if i == 0 and image_size <= STRIDED_FIRST_STRIDE1_UP_TO else 2
            if stride == 2 and size < 2:
                # A stride-2 conv on a 1-px map only mixes that pixel with padding: the stage
                # adds parameters and no receptive field, so it is a config mistake.
                raise ConfigError(
                    "backbone.widths",
                    f"{len(widths)} stages shrink {image_size}-px images to 1 px before stage {i + 1}; "
                    f"use at most {i} widths for this image size",
                )
            # No conv bias: the BatchNorm right after it has its own shift.
            layers += [nn.Conv2d(c_in, width, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            size = (size - 1) // stride + 1
            c_in = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.final_size = size  # spatial size of the last map, before pooling
        self.out_dim = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)
