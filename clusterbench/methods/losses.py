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


def scan_loss(anchors: torch.Tensor, neighbors: torch.Tensor, entropy_weight: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SCAN's loss (Van Gansbeke et al. 2020, Eq. 2) on logits of anchors and their neighbours
    (B×K each): −(1/B) Σ log⟨p_i, p_j⟩ − λ·H(p̄), with p̄ the anchors' mean prediction and H its
    entropy (maximised: spreads the images over the clusters).

    Returns (total, consistency, entropy). As in the authors' code the log is clamped at −100
    (``nn.BCELoss`` against ones), and p̄'s entries at 1e-8 inside the log.
    """
    p = torch.softmax(anchors.float(), dim=1)
    q = torch.softmax(neighbors.float(), dim=1)
    similarity = (p * q).sum(1)  # B
    consistency = -similarity.log().clamp_min(-100.0).mean()
    mean = p.mean(0)  # K
    entropy = -(mean.clamp_min(1e-8).log() * mean).sum()
    return consistency - entropy_weight * entropy, consistency, entropy


def confident_cross_entropy(weak: torch.Tensor, strong: torch.Tensor, threshold: float, balance: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """SCAN's self-labelling loss (§3.2): images whose prediction on the un-augmented view is
    confident (max p > ``threshold``) take its argmax as their label, and the strongly augmented
    view is trained toward it with cross-entropy. With ``balance`` each class is weighted by
    n / n_c over the confident images of the batch (the authors' code), so frequent clusters do
    not swallow the rest; the mean is then weighted (Σ w_y·CE / Σ w_y, torch's convention).

    ``weak``, ``strong``: B×K logits (``weak`` without gradient). Returns (loss, number of
    confident images); with none confident the loss is a zero that still has a graph.
    """
    prob = torch.softmax(weak.detach().float(), dim=1)
    top, target = prob.max(1)
    mask = top > threshold
    count = mask.sum()
    if not bool(count):  # the authors' code raises here; an idle step is kinder to short runs
        return strong.sum() * 0.0, count
    target = target[mask]
    weight = None
    if balance:
        classes, counts = target.unique(return_counts=True)
        weight = torch.ones(strong.shape[1], device=strong.device)
        weight[classes] = len(target) / counts.float()
    return F.cross_entropy(strong[mask].float(), target, weight=weight), count
