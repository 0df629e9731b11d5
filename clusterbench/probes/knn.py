"""The weighted kNN classifier of instance discrimination (Wu et al., CVPR 2018, §3.4), as the
MoCo CIFAR demo monitors training with it: cosine similarity between L2-normalised features,
the k most similar memory (train) features vote for their labels with weight exp(s/τ), and a
query takes the class of the largest summed weight (k = 200, τ = 0.07 by default).

Exact and chunked, on the features' device: the memory is one N×D block and each chunk of
queries one Q×N similarity block, so a GPU scores 10k queries against 60k in a few calls.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CHUNK = 1024  # queries per similarity block: bounds memory at CHUNK·N floats


def knn_predict(memory: torch.Tensor, memory_labels: torch.Tensor, queries: torch.Tensor, num_classes: int, k: int = 200,
                temperature: float = 0.07) -> torch.Tensor:
    """Class of every query row (int64, on ``queries``' device) by weighted vote of its ``k``
    nearest memory rows. ``k`` larger than the memory uses all of it."""
    if temperature <= 0:
        raise ValueError(f"temperature {temperature} must be positive")
    mem = F.normalize(memory.float(), dim=1)
    labels = memory_labels.to(mem.device, torch.int64)
    k = min(int(k), len(mem))
    out = []
    for s in range(0, len(queries), CHUNK):
        q = F.normalize(queries[s : s + CHUNK].float().to(mem.device), dim=1)
        sim, idx = (q @ mem.T).topk(k, dim=1)  # Q×k, most similar first
        weight = (sim / temperature).exp()
        votes = torch.zeros(len(q), num_classes, device=mem.device, dtype=weight.dtype)
        votes.scatter_add_(1, labels[idx], weight)
        out.append(votes.argmax(1))
    return torch.cat(out).to(queries.device) if out else torch.zeros(0, dtype=torch.int64, device=queries.device)
