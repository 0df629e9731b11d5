"""InfoGAN's discriminator body: the network D and the recognition network Q share.

The MNIST architecture of InfoGAN (Chen et al. 2016, appendix C.1; the official code's
``regularized_gan.py``): 4×4 conv 64, stride 2, leaky ReLU; 4×4 conv 128, stride 2, BatchNorm,
leaky ReLU; FC 1024, BatchNorm, leaky ReLU. D's real/fake logit and Q's code posterior are small
heads on these 1024 features (``clusterbench.methods.infogan``), and the features are what the
method's k-means read-out clusters.

Other sizes adapt the design as the other backbones do: one more stride-2 stage (twice the
width, at most ``max_width``) per doubling of the image size beyond 28 px (32 px: 2 stages, an 8×8
map; 64: 3; 96: 4, a 6×6 map). Each conv is 4×4 with padding 1, so a stride-2 stage halves an
even size exactly (28 → 14 → 7, as TensorFlow's SAME padding in the official code).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from clusterbench.backbones import check_input, check_positive_int
from clusterbench.errors import ConfigError

REFERENCE_SIZE = 28  # the size the paper's two stages are for


def infogan_stages(image_size: int) -> int:
    """Stride-2 stages for ``image_size``: 2 up to 28 px·√2, one more per doubling after."""
    return 2 + max(0, round(math.log2(image_size / REFERENCE_SIZE)))


def stage_size(image_size: int, stages: int) -> int:
    """The side of the map after ``stages`` 4×4 stride-2 convs with padding 1."""
    for _ in range(stages):
        image_size = (image_size + 2 - 4) // 2 + 1
    return image_size


def init_gan_weights(module: nn.Module) -> None:
    """The official code's initialisation: conv / linear weights N(0, 0.02²), biases 0, BatchNorm
    scale 1 and shift 0 (DCGAN's convention too)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class InfoGANBody(nn.Module):
    """D/Q's shared body; ``out_dim = hidden`` (1024)."""

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        name: str = "infogan",
        width: int = 64,
        max_width: int = 512,
        hidden: int = 1024,
        leaky_slope: float = 0.01,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        in_channels, image_size = check_input(in_channels, image_size)
        width, max_width, hidden = (check_positive_int(f"backbone.{k}", v) for k, v in (("width", width), ("max_width", max_width), ("hidden", hidden)))
        if isinstance(leaky_slope, bool) or not isinstance(leaky_slope, (int, float)) or not 0.0 <= leaky_slope < 1.0:
            raise ConfigError("backbone.leaky_slope", f"{leaky_slope!r} is not a slope in [0, 1); use 0.01 (the official code) or 0.1 (the paper)")
        self.name, self.in_channels, self.image_size = name, in_channels, image_size
        self.stages = infogan_stages(image_size)
        self.map_size = stage_size(image_size, self.stages)
        if self.map_size < 1:
            raise ConfigError("backbone.image_size", f"{image_size}-px images vanish in InfoGAN's body; it needs at least 4 px")
        self.widths = [min(width * 2**i, max_width) for i in range(self.stages)]
        layers: list[nn.Module] = []
        channels = in_channels
        for i, out in enumerate(self.widths):
            layers.append(nn.Conv2d(channels, out, 4, stride=2, padding=1))
            if i > 0 and batch_norm:  # the first conv has no BatchNorm, as in the paper and the official code
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.LeakyReLU(float(leaky_slope)))
            channels = out
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Sequential(
            nn.Linear(channels * self.map_size**2, hidden),
            *([nn.BatchNorm1d(hidden)] if batch_norm else []),
            nn.LeakyReLU(float(leaky_slope)),
        )
        self.out_dim = hidden
        init_gan_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # flatten() of a channels_last map copies into NCHW order: the FC sees one feature order
        return self.fc(self.convs(x).flatten(1))
