"""Split BatchNorm: BN statistics over sub-batches, so one device imitates several.

MoCo's batch statistics leak which key belongs to which query when both are normalised over
the same batch (the model "cheats" through BN; MoCo §3.3). With several devices the keys are
shuffled across them (shuffle-BN); on one device the batch is normalised in ``num_splits``
independent groups and the keys are shuffled between groups — the official CIFAR-10 demo's
SplitBatchNorm. In evaluation mode it is plain BatchNorm with the running statistics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from clusterbench.errors import ConfigError


class SplitBatchNorm(nn.BatchNorm2d):
    """BatchNorm over ``num_splits`` consecutive sub-batches; works on N×C and N×C×H×W."""

    def __init__(self, num_features: int, num_splits: int, **kwargs) -> None:  # noqa: ANN003 — BatchNorm's own
        super().__init__(num_features, **kwargs)
        self.num_splits = num_splits

    def _check_input_dim(self, input: torch.Tensor) -> None:  # noqa: A002 — torch's name
        if input.dim() not in (2, 3, 4, 5):
            raise ValueError(f"expected 2-D to 5-D input, got {input.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.num_splits
        if not self.training or s == 1:
            return super().forward(x)
        n, c, rest = x.shape[0], x.shape[1], x.shape[2:]
        if n % s:
            raise ConfigError("method.split_bn", f"{s} splits do not divide a batch of {n}; use a divisor of the per-device batch")
        # sub-batch i = samples [i·n/s, (i+1)·n/s): fold the splits into channels
        folded = x.view(s, n // s, c, *rest).transpose(0, 1).reshape(n // s, s * c, *rest)
        mean, var = self.running_mean.repeat(s), self.running_var.repeat(s)
        weight = None if self.weight is None else self.weight.repeat(s)
        bias = None if self.bias is None else self.bias.repeat(s)
        out = F.batch_norm(folded, mean, var, weight, bias, True, self.momentum if self.momentum is not None else 0.1, self.eps)
        with torch.no_grad():  # the running statistics are the mean over the splits
            self.running_mean.copy_(mean.view(s, c).mean(0))
            self.running_var.copy_(var.view(s, c).mean(0))
            self.num_batches_tracked += 1
        return out.view(n // s, s, c, *rest).transpose(0, 1).reshape(n, c, *rest)


def convert_split_bn(module: nn.Module, num_splits: int) -> nn.Module:
    """Replace every BatchNorm1d/2d in ``module`` by a SplitBatchNorm with the same parameters."""
    if num_splits < 1:
        raise ConfigError("method.split_bn", f"{num_splits} is not a number of splits; use 1 (off) or more")
    if num_splits == 1:
        return module
    for name, child in module.named_children():
        if isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d)) and not isinstance(child, SplitBatchNorm):
            split = SplitBatchNorm(child.num_features, num_splits, eps=child.eps, momentum=child.momentum, affine=child.affine)
            split.load_state_dict(child.state_dict())
            setattr(module, name, split)
        else:
            convert_split_bn(child, num_splits)
    return module
