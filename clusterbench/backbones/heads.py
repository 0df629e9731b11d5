"""Projection heads: the small MLP between backbone features and a contrastive / clustering loss."""

from __future__ import annotations

from typing import Mapping, Optional

from torch import nn

from clusterbench.backbones import check_positive_int
from clusterbench.errors import ConfigError


def projection_head(
    in_dim: int,
    hidden_dim: int,
    out_dim: int,
    num_layers: int = 2,
    batch_norm: bool = True,
    *,
    prefix: str = "head",
    keys: Optional[Mapping[str, str]] = None,
) -> nn.Module:
    """A projection MLP ``in_dim → hidden_dim → … → out_dim``.

    ``num_layers=1``: a bare ``nn.Linear`` (``hidden_dim`` is checked but unused).
    ``num_layers ≥ 2``: an ``nn.Sequential`` of ``num_layers - 1`` blocks of Linear
    (+ BatchNorm1d) + ReLU at ``hidden_dim``, then a final Linear to ``out_dim``; with 2 layers
    that is MoCo v2's head (``batch_norm=False``) or SimCLR's (``batch_norm=True``). Hidden
    Linears drop their bias under BatchNorm (the norm's shift replaces it); the final Linear
    keeps it.

    Bad arguments raise :class:`ConfigError` naming the config key the user has to change:
    ``keys[argument]`` where given, else ``f"{prefix}.{argument}"``. E.g. MoCo passes
    ``keys={"hidden_dim": "method.head_hidden", "out_dim": "method.feature_dim",
    "num_layers": "method.head_layers"}``.
    """
    names = {arg: f"{prefix}.{arg}" for arg in ("in_dim", "hidden_dim", "out_dim", "num_layers", "batch_norm")}
    unknown = set(keys or {}) - set(names)
    if unknown:
        raise ValueError(f"keys names no argument of projection_head: {sorted(unknown)}")
    names.update(keys or {})
    in_dim = check_positive_int(names["in_dim"], in_dim)
    hidden_dim = check_positive_int(names["hidden_dim"], hidden_dim)
    out_dim = check_positive_int(names["out_dim"], out_dim)
    num_layers = check_positive_int(names["num_layers"], num_layers)
    if not isinstance(batch_norm, bool):
        raise ConfigError(names["batch_norm"], f"{batch_norm!r} is not a boolean; use true or false")
    if num_layers == 1:
        return nn.Linear(in_dim, out_dim)
    layers: list[nn.Module] = []
    d = in_dim
    for _ in range(num_layers - 1):
        layers.append(nn.Linear(d, hidden_dim, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers.append(nn.ReLU(inplace=True))
        d = hidden_dim
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)
