"""Exact nearest neighbours under cosine similarity: SCAN's mining step (Van Gansbeke et al.
2020, §3.1: the k nearest neighbours of every image in the pretext feature space).

Two back-ends behind one call, as for k-means: faiss's exact inner-product index on the CPU
(``IndexFlatIP``, what SCAN's own code uses), and chunked matrix products with ``topk`` on
any torch device, so a GPU mines without faiss-gpu. Both are exact, so they agree up to ties.

Row ``i`` of the answer starts with ``i`` itself, then its ``k`` neighbours by falling
similarity: SCAN's code searches k + 1 and keeps the image itself, so that the "neighbour"
drawn for an anchor is now and then the anchor under another augmentation.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

CHUNK = 4096  # query rows per similarity block in the torch back-end: bounds memory at CHUNK·N floats
BACKENDS = ("auto", "faiss", "torch")


def nearest_neighbors(features: torch.Tensor, k: int, backend: str = "auto") -> torch.Tensor:
    """N×(k+1) int64 indices on ``features``' device: each row's own index first, then its ``k``
    most cosine-similar other rows, most similar first. ``auto``: faiss on the CPU, torch on a GPU."""
    n = len(features)
    if not 1 <= k < n:
        raise ValueError(f"{k} neighbours of {n} points; use 1 ≤ k < {n}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    x = F.normalize(features.float(), dim=1)
    if backend == "faiss" or (backend == "auto" and x.device.type == "cpu"):
        found = _faiss_search(x, k + 1)
    else:
        found = _torch_search(x, k + 1)
    return _self_first(found.to(features.device), k)


def _faiss_search(x: torch.Tensor, k: int) -> torch.Tensor:
    import faiss

    data = np.ascontiguousarray(x.cpu().numpy(), dtype=np.float32)
    index = faiss.IndexFlatIP(data.shape[1])
    index.add(data)
    _, found = index.search(data, k)  # N×k, by falling inner product
    return torch.from_numpy(found.astype(np.int64))


def _torch_search(x: torch.Tensor, k: int) -> torch.Tensor:
    parts = []
    for s in range(0, len(x), CHUNK):
        parts.append((x[s : s + CHUNK] @ x.T).topk(k, dim=1).indices)  # B×k
    return torch.cat(parts)


def _self_first(found: torch.Tensor, k: int) -> torch.Tensor:
    """Each row's own index in column 0, then the first ``k`` others in their order. An image
    with exact duplicates may not find itself first (ties), and is then moved there."""
    n = len(found)
    own = torch.arange(n, device=found.device)[:, None]
    others = found != own  # N×(k+1): True where the entry is another image
    # keep the first k "other" entries of each row, in their order (a stable sort on ¬others
    # moves the row's own index, where present, to the end)
    order = torch.sort((~others).to(torch.int8), dim=1, stable=True).indices
    kept = torch.gather(found, 1, order)[:, :k]
    return torch.cat([own, kept], dim=1)
