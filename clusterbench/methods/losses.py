"""Contrastive losses shared by the methods."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(q: torch.Tensor, k: torch.Tensor, negatives: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE (MoCo, eq. 1): −log exp(q·k⁺/τ) / (exp(q·k⁺/τ) + Σ exp(q·k⁻/τ)), batch mean.

    ``q``, ``k``: B×D normalised queries and their positive keys; ``negatives``: K×D normalised.
    The positive sits in column 0 of the logits, so the target is class 0.
    """
    positive = (q * k).sum(1, keepdim=True)  # B×1
    negative = q @ negatives.T  # B×K
    logits = torch.cat([positive, negative], dim=1) / temperature  # B×(1+K)
    return F.cross_entropy(logits.float(), torch.zeros(len(q), dtype=torch.long, device=q.device))
