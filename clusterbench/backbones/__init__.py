"""Feature extractors: modules mapping images N×C×H×W to features N×``out_dim``.

Every backbone is built as ``Cls(in_channels, image_size, name, **schema fields)`` (the run
passes the dataset's ``in_channels`` and ``image_size``), has an int ``out_dim`` and returns
features without a projection head; :func:`clusterbench.backbones.heads.projection_head`
builds those.

- ``pixels``: :class:`~clusterbench.backbones.pixels.Pixels`, out_dim C·H·W
- ``convnet``: :class:`~clusterbench.backbones.convnet.ConvNet`, out_dim ``hidden``
- ``strided``: :class:`~clusterbench.backbones.convnet.StridedConvNet`, out_dim ``widths[-1]``
- ``resnet18/34/50``: :class:`~clusterbench.backbones.resnet.ResNet`, out_dim 8·width (18, 34)
  or 32·width (50): 512 / 2048 at the default width 64
- ``mlp``: :class:`~clusterbench.backbones.mlp.MLP`, out_dim ``hidden[-1]``
- ``infogan``: :class:`~clusterbench.backbones.infogan.InfoGANBody`, InfoGAN's D/Q body, out_dim ``hidden``

The classes are imported lazily (``from clusterbench.backbones import ResNet`` works) so that
the classical runs, which only need :class:`Pixels`, do not pay for importing the rest.
"""

from __future__ import annotations

import importlib
from numbers import Integral
from typing import Any

from clusterbench.errors import ConfigError

_LAZY = {
    "Pixels": "clusterbench.backbones.pixels",
    "ConvNet": "clusterbench.backbones.convnet",
    "StridedConvNet": "clusterbench.backbones.convnet",
    "ResNet": "clusterbench.backbones.resnet",
    "MLP": "clusterbench.backbones.mlp",
    "InfoGANBody": "clusterbench.backbones.infogan",
    "projection_head": "clusterbench.backbones.heads",
}

__all__ = [*_LAZY, "check_positive_int", "check_int_list", "check_input"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _is_int(value: Any) -> bool:
    # bool is an Integral too, but `hidden: true` is a typo, not a width of 1.
    return isinstance(value, Integral) and not isinstance(value, bool)


def check_positive_int(key: str, value: Any) -> int:
    """``value`` as an int ≥ 1, or a :class:`ConfigError` naming ``key``."""
    if not _is_int(value) or value < 1:
        raise ConfigError(key, f"{value!r} is not a positive integer; use an integer ≥ 1")
    return int(value)


def check_int_list(key: str, values: Any) -> list[int]:
    """A non-empty list of positive ints (a ListConfig from Hydra counts), or a ConfigError."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ConfigError(key, f"{values!r} is not a list; give a list of positive integers such as [32, 64]")
    out = list(values)
    if not out:
        raise ConfigError(key, "the list is empty; give at least one positive integer")
    for v in out:
        if not _is_int(v) or v < 1:
            raise ConfigError(key, f"{v!r} in {out} is not a positive integer; every entry must be ≥ 1")
    return [int(v) for v in out]


def check_input(in_channels: Any, image_size: Any) -> tuple[int, int]:
    """The dataset-given input shape, checked (the keys are the constructor's kwargs)."""
    return check_positive_int("backbone.in_channels", in_channels), check_positive_int("backbone.image_size", image_size)
