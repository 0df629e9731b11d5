"""k-means with two back-ends behind one call: faiss (default, CPU or faiss-gpu) and torch
(any torch device, so a GPU works without faiss-gpu).

Both back-ends run the same algorithm, so with the same seed they reach the same partition:
- initialisation from the seed: k-means++ (Arthur & Vassilvitskii 2007: each next centre
  drawn with probability ∝ D², the squared distance to the nearest centre so far), or
  ``init="random"``: ``k`` distinct points drawn uniformly (faiss's own scheme);
- Lloyd iterations: ``niter`` of them in faiss's C++ loop; in torch until the objective stops
  improving (relative change < ``tol``) or ``niter`` (once converged, more iterations change
  nothing, so both end at the same partition);
- an empty cluster is refilled by splitting a populated one: copy a centroid picked with
  probability ∝ (size − 1) and push the two copies apart by ±1/1024 (faiss's rule, which
  DeepCluster relies on too);
- ``restarts`` runs, each seeded by its own child of ``SeedSequence(seed)`` (so seeds 0 and 1
  share no restart, and restart 0 is the same whatever the count); the lowest inertia wins;
- ``spherical``: inputs are L2-normalised and centroids renormalised after every update
  (cosine k-means, as PCL / DeepCluster-v2 / SwAV use).

Both back-ends train on every point by default: faiss otherwise subsamples to 256 points per
centroid, which costs ≈ 4 ACC points on MNIST. ``max_points_per_centroid=m`` bounds the cost
for large N: when N > K·m, each restart seeds and runs Lloyd on K·m rows drawn (without
replacement) from its own generator, the same rows for both back-ends, and then assigns all N
once, so the time grows linearly in N past that point. At N ≤ K·m nothing is drawn and the
result is the same as without the bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import torch
from tqdm.auto import tqdm

ArrayLike = Union[np.ndarray, torch.Tensor]
SPLIT_EPS = 1.0 / 1024.0
CHUNK = 65536  # rows per distance block in the torch back-end: bounds memory at CHUNK·K floats
# Below this many multiply-adds per iteration (N·K·D), faiss runs single-threaded: its OpenMP
# threads otherwise fight torch's spinning ones, and a 600-point iteration took 25 ms, not 0.1.
SMALL_WORK = 1 << 24
NORM_BLOCK = 1 << 22  # floats per block when squaring rows (16 MB): no N×D temporary


@dataclass
class KMeansResult:
    assignments: torch.Tensor  # N, int64, on the input's device
    centroids: torch.Tensor  # K×D, float32
    inertia: float  # Σ ‖x − c(x)‖² of the returned partition
    iterations: int  # Lloyd iterations run by the winning restart (faiss: always niter)


def kmeans(
    x: ArrayLike,
    k: int,
    *,
    niter: int = 50,
    restarts: int = 1,
    seed: int = 0,
    spherical: bool = False,
    backend: str = "faiss",
    init: str = "kmeans++",
    device: Optional[Union[str, torch.device]] = None,
    max_points_per_centroid: Optional[int] = None,
    tol: float = 1e-7,
    progress: bool = False,
) -> KMeansResult:
    """Cluster the rows of ``x`` (N×D) into ``k`` groups.

    ``device`` defaults to ``x``'s device. The faiss back-end uses faiss-gpu when ``device``
    is CUDA and faiss was built with GPUs, else the CPU. Returns torch tensors on ``device``.
    """
    backend = str(getattr(backend, "value", backend))
    if backend not in ("faiss", "torch"):
        raise ValueError(f"unknown k-means backend {backend!r}; use 'faiss' or 'torch'")
    xt = torch.as_tensor(x)
    if xt.dim() != 2:
        raise ValueError(f"k-means needs an N×D matrix, got shape {tuple(xt.shape)}")
    n = xt.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"cannot make {k} clusters from {n} points")
    if init not in ("kmeans++", "random"):
        raise ValueError(f"unknown k-means init {init!r}; use 'kmeans++' or 'random'")
    if niter < 1 or restarts < 1:
        raise ValueError("niter and restarts must be at least 1")
    device = torch.device(device) if device is not None else xt.device
    xt = xt.to(device=device, dtype=torch.float32)
    if spherical:
        xt = torch.nn.functional.normalize(xt, dim=1)

    lloyd = _faiss_lloyd if backend == "faiss" else _torch_lloyd
    best: Optional[KMeansResult] = None
    children = np.random.SeedSequence(seed).spawn(restarts)
    for child in tqdm(children, desc=f"k-means ({backend}, K={k})", disable=not progress, leave=False):
        gen = torch.Generator().manual_seed(int(child.generate_state(1, dtype=np.uint64)[0] >> 1))
        train = training_rows(xt, k, max_points_per_centroid, gen)
        start = _kmeans_pp(train, k, gen) if init == "kmeans++" else train[torch.randperm(len(train), generator=gen)[:k].to(device)].clone()
        centroids, iterations = lloyd(train, start, niter=niter, spherical=spherical, gen=gen, tol=tol, max_points_per_centroid=max_points_per_centroid)
        assignments, inertia = assign(xt, centroids, spherical)
        if best is None or inertia < best.inertia:
            best = KMeansResult(assignments, centroids, inertia, iterations)
    assert best is not None
    return best


def training_rows(x: torch.Tensor, k: int, max_points_per_centroid: Optional[int], gen: torch.Generator) -> torch.Tensor:
    """The rows one restart fits on: all of ``x``, or K·m of them (in their original order)
    drawn from ``gen`` when ``max_points_per_centroid`` m leaves fewer than N. Nothing is drawn
    otherwise, so ``gen``'s later draws (the seeding) are those of an unbounded run."""
    n = x.shape[0]
    if max_points_per_centroid is None or n <= k * max_points_per_centroid:
        return x
    keep = torch.randperm(n, generator=gen)[: k * max_points_per_centroid].sort().values
    return x[keep.to(x.device)]  # (K·m)×D


def assign(x: torch.Tensor, centroids: torch.Tensor, spherical: bool = False, x_sq: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, float]:
    """Nearest centroid of every row (chunked), and the total squared distance.

    ``x_sq`` (the rows' squared norms) may be passed in when assigning the same ``x`` often.
    """
    if x_sq is None and not spherical:
        x_sq = squared_norms(x)
    labels = torch.empty(x.shape[0], dtype=torch.int64, device=x.device)
    total = 0.0
    c_sq = (centroids * centroids).sum(1)
    for s in range(0, x.shape[0], CHUNK):
        xb = x[s : s + CHUNK]
        if spherical:
            best, labels[s : s + CHUNK] = (xb @ centroids.T).max(1)  # cosine, both sides normalised
            total += float((2.0 - 2.0 * best).clamp_min(0).sum())
        else:
            d = c_sq[None, :] - 2.0 * (xb @ centroids.T)  # B×K, ‖x‖² added below
            best, labels[s : s + CHUNK] = d.min(1)
            total += float((best + x_sq[s : s + CHUNK]).clamp_min(0).sum())
    return labels, total


def squared_norms(x: torch.Tensor) -> torch.Tensor:
    """‖x_i‖² of every row, a block of rows at a time: ``(x * x).sum(1)`` in one go made a
    full N×D temporary (raw CIFAR-10: 0.74 GB, the k-means peak). Each row is reduced exactly
    as the one-shot call reduces it, so the values are bit-identical."""
    rows = max(1, NORM_BLOCK // max(1, x.shape[1]))
    out = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    for s in range(0, x.shape[0], rows):
        xb = x[s : s + rows]
        out[s : s + rows] = (xb * xb).sum(1)
    return out


def _kmeans_pp(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: the first centre uniform, each next one drawn ∝ D²."""
    n = x.shape[0]
    idx = [int(torch.randint(0, n, (1,), generator=gen))]
    x_sq = squared_norms(x)
    d2 = torch.full((n,), float("inf"), device=x.device)
    for _ in range(1, k):
        c = x[idx[-1]]
        d2 = torch.minimum(d2, (x_sq - 2.0 * (x @ c) + c @ c).clamp_min(0))
        cdf = torch.cumsum(d2.double(), 0)
        if float(cdf[-1]) <= 0:  # fewer distinct points than k: take any unused one
            idx.append(next(i for i in range(n) if i not in set(idx)))
            continue
        u = float(torch.rand(1, generator=gen, dtype=torch.float64)) * float(cdf[-1])
        idx.append(min(int(torch.searchsorted(cdf, torch.tensor([u], dtype=torch.float64, device=x.device))), n - 1))
    return x[torch.tensor(idx, device=x.device)].clone()


def split_empty_clusters(centroids: torch.Tensor, counts: torch.Tensor, gen: torch.Generator) -> None:
    """Refill empty clusters in place by splitting populated ones (faiss's rule).

    For each cluster ``j`` with ``counts[j] == 0``: a donor is drawn with probability
    ∝ (size − 1) (a singleton cannot be split), ``centroids[j]`` becomes the donor's centroid
    × (1 + 1/1024) and the donor's × (1 − 1/1024), and the donor's count is shared between the
    two. ``centroids`` (K×D) and ``counts`` (K) are updated in place; the points themselves are
    not reassigned (the next assignment step does that). Nothing happens when no cluster has
    two points. DeepCluster re-seeds the empty clusters of its pseudo-labels with it.
    """
    for j in torch.nonzero(counts == 0).flatten().tolist():
        weights = (counts - 1).clamp_min(0).double().cpu()
        if weights.sum() == 0:
            return
        donor = int(torch.multinomial(weights, 1, generator=gen))
        centroids[j] = centroids[donor] * (1 + SPLIT_EPS)
        centroids[donor] = centroids[donor] * (1 - SPLIT_EPS)
        counts[j] = counts[donor] // 2
        counts[donor] -= counts[j]


def _torch_lloyd(x: torch.Tensor, centroids: torch.Tensor, *, niter: int, spherical: bool, gen: torch.Generator, tol: float, **_: object) -> tuple[torch.Tensor, int]:
    """Lloyd iterations in torch (any device) until the objective stops improving."""
    x_sq = None if spherical else squared_norms(x)  # reused by every assignment
    previous = float("inf")
    for it in range(1, niter + 1):
        labels, objective = assign(x, centroids, spherical, x_sq)
        counts = torch.bincount(labels, minlength=centroids.shape[0])
        sums = torch.zeros_like(centroids).index_add_(0, labels, x)
        centroids = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None].to(sums.dtype), centroids)
        split_empty_clusters(centroids, counts, gen)
        if spherical:
            centroids = torch.nn.functional.normalize(centroids, dim=1)
        if previous - objective <= tol * abs(objective):
            return centroids, it
        previous = objective
    return centroids, niter


def _faiss_lloyd(
    x: torch.Tensor, centroids: torch.Tensor, *, niter: int, spherical: bool, gen: torch.Generator, max_points_per_centroid: Optional[int], **_: object
) -> tuple[torch.Tensor, int]:
    """faiss's own Lloyd loop (assignment, update, empty-cluster split) from our start.

    faiss has no convergence test: it runs all ``niter`` iterations, in C++.
    """
    import faiss

    xn = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
    use_gpu = x.device.type == "cuda" and hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0
    km = faiss.Kmeans(
        xn.shape[1],
        centroids.shape[0],
        niter=niter,
        spherical=spherical,
        seed=int(torch.randint(0, 2**31 - 1, (1,), generator=gen)),  # only faiss's subsampling uses it
        max_points_per_centroid=max_points_per_centroid or xn.shape[0],
        min_points_per_centroid=1,
        gpu=use_gpu,
        verbose=False,
    )
    before = faiss.omp_get_max_threads()
    if xn.shape[0] * xn.shape[1] * centroids.shape[0] < SMALL_WORK:
        faiss.omp_set_num_threads(1)
    try:
        km.train(xn, init_centroids=np.ascontiguousarray(centroids.cpu().numpy(), dtype=np.float32))
    finally:
        faiss.omp_set_num_threads(before)
    return torch.from_numpy(km.centroids.copy()).to(x.device), niter
