"""ResNet-18/34/50 trunks with a CIFAR stem option and a first-stage width.

Written here rather than taken from ``torchvision.models.resnet18/34/50``: torchvision hard-codes
the stage widths 64-128-256-512 (its ``width_per_group`` only widens the inside of bottleneck
blocks), and importing torchvision.models costs about 1.5 s per run. The blocks follow
torchvision's exactly (ResNet v1.5: the stride sits on the bottleneck's 3×3 conv) and keep its
parameter names and initialisation, so at ``width=64`` the state dict is torchvision's minus
``fc`` (and with ``conv1`` 3×3 under the CIFAR stem): torchvision weights load with
``strict=False``, and the parameter counts match (ResNet-18, CIFAR stem: 11,168,832).
"""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch import nn

from clusterbench.backbones import check_input, check_positive_int
from clusterbench.errors import ConfigError

# The default CIFAR-stem cut-off: MoCo's CIFAR demo and SimCLR use it at 32 px, and STL's
# 96 px / ImageNet's 224 px are what the ImageNet stem was designed for.
CIFAR_STEM_UP_TO = 64


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


def conv1x1(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3×3 convs with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.conv1 = conv3x3(c_in, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (strided), 1×1 expand ×4, with a residual connection (ResNet-50)."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.conv1 = conv1x1(c_in, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


ARCHS: dict[int, tuple[type[Union[BasicBlock, Bottleneck]], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
}


def _halve(size: int) -> int:
    """Output size of a stride-2 conv / max-pool with 'same' padding (k=3 p=1, or k=7 p=3)."""
    return (size - 1) // 2 + 1


class ResNet(nn.Module):
    """A ResNet trunk without its classifier: global-average-pooled features N×``out_dim``.

    ``depth`` 18 / 34 / 50; ``width`` is the first stage's channel count (stages are width,
    2·width, 4·width, 8·width; ``out_dim`` = 8·width·expansion = 512 / 512 / 2048 at 64).
    ``cifar_stem``: conv1 is 3×3 stride 1 and there is no max-pool (MoCo's CIFAR demo, SimCLR);
    otherwise the ImageNet stem, 7×7 stride 2 + 3×3 max-pool stride 2. ``None`` picks the
    CIFAR stem for images ≤ 64 px. The ImageNet stem needs images ≥ 17 px and the CIFAR stem
    ≥ 5 px, so that the map entering the last stride-2 stage is at least 2 px wide.
    """

    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 32,
        name: str = "resnet18",
        depth: int = 18,
        cifar_stem: Optional[bool] = None,
        width: int = 64,
    ) -> None:
        super().__init__()
        in_channels, image_size = check_input(in_channels, image_size)
        if isinstance(depth, bool) or depth not in ARCHS:
            raise ConfigError("backbone.depth", f"{depth!r} is not a supported depth; use 18, 34 or 50")
        width = check_positive_int("backbone.width", width)
        if cifar_stem is not None and not isinstance(cifar_stem, bool):
            raise ConfigError("backbone.cifar_stem", f"{cifar_stem!r} is not a boolean; use true, false or null (null: true for images ≤ {CIFAR_STEM_UP_TO} px)")
        cifar_stem = image_size <= CIFAR_STEM_UP_TO if cifar_stem is None else cifar_stem
        block, layers = ARCHS[int(depth)]

        # Size of the map entering layer4 (its stride-2 conv must see ≥ 2 px to do anything).
        size = image_size if cifar_stem else _halve(_halve(image_size))
        size = _halve(_halve(size))  # layer2, layer3
        if size < 2:
            if not cifar_stem:
                raise ConfigError(
                    "backbone.cifar_stem",
                    f"the ImageNet stem shrinks {image_size}-px images to {size} px before the last stage; "
                    "set cifar_stem=true (or null) or use images ≥ 17 px",
                )
            raise ConfigError("backbone.image_size", f"{image_size}-px images are too small for a ResNet; it needs ≥ 5 px")

        self.name, self.in_channels, self.image_size = name, in_channels, image_size
        self.depth, self.width, self.cifar_stem = int(depth), width, cifar_stem
        if cifar_stem:
            self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self._c = width  # channels flowing into the next stage while building
        self.layer1 = self._make_layer(block, width, layers[0], stride=1)
        self.layer2 = self._make_layer(block, 2 * width, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 4 * width, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 8 * width, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = 8 * width * block.expansion
        del self._c

        # torchvision's initialisation, so runs compare with torchvision-built trunks.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block: type[Union[BasicBlock, Bottleneck]], planes: int, blocks: int, stride: int) -> nn.Sequential:
        out = planes * block.expansion
        downsample = None
        if stride != 1 or self._c != out:
            downsample = nn.Sequential(conv1x1(self._c, out, stride), nn.BatchNorm2d(out))
        modules = [block(self._c, planes, stride, downsample)]
        self._c = out
        modules += [block(out, planes) for _ in range(1, blocks)]
        return nn.Sequential(*modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)
