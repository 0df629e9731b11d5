"""Projection heads: the small MLP between backbone features and a contrastive / clustering loss."""

from __future__ import annotations

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
) -> nn.Module:
    """A projection MLP ``in_dim → hidden_dim → … → out_dim``.

    ``num_layers=1``: a bare ``nn.Linear`` (``hidden_dim`` is checked but unused).
    ``num_layers ≥ 2``: an ``nn.Sequential`` of ``num_layers - 1`` blocks of Linear
    (+ BatchNorm1d) + ReLU at ``hidden_dim``, then a final Linear to ``out_dim``; with 2 layers
    that is MoCo v2's head (``batch_norm=False``) or SimCLR's (``batch_norm=True``). Hidden
    Linears drop their bias under BatchNorm (the norm's shift replaces it); the final Linear
    keeps it.

    Bad arguments raise :class:`ConfigError` keyed ``f"{prefix}.{argument}"``; pass the config
    path the values came from (e.g. ``prefix="method.head"``) so the message names the key the
    user has to change.
    """
    in_dim = check_positive_int(f"{prefix}.in_dim", in_dim)
    hidden_dim = check_positive_int(f"{prefix}.hidden_dim", hidden_dim)
    out_dim = check_positive_int(f"{prefix}.out_dim", out_dim)
    num_layers = check_positive_int(f"{prefix}.num_layers", num_layers)
    if not isinstance(batch_norm, bool):
        raise ConfigError(f"{prefix}.batch_norm", f"{batch_norm!r} is not a boolean; use true or false")
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
