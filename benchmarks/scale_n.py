"""Time against N: the embedding pass, k-means as the E-steps run it, and the evaluator, at
10k, 100k and 1M synthetic items. The point is the shape: each should cost the same per item
at every N (linear), with no step that grows faster or holds an N-sized float copy it does
not need.

    taskset -c 0 python benchmarks/scale_n.py [--n 10000 100000 1000000] [--threads 1]

(a) ``clusterbench.methods.classical.extract_features``: a small conv net over N 1×8×8 uint8
    images, in its batches, into one preallocated N×16 output;
(b) ``clusterbench.cluster.kmeans`` on those features, K = 10, with ``max_points_per_centroid``
    (256, faiss's own default) so that seeding and Lloyd run on K·256 rows and only the final
    assignment sees all N;
(c) ``clusterbench.metrics.evaluate`` of the assignments against N synthetic labels.

Prints a Markdown table: seconds per part, and seconds per item relative to the first row.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from clusterbench.cluster import kmeans
from clusterbench.methods.base import RunContext
from clusterbench.methods.classical import extract_features
from clusterbench.metrics import evaluate

K, SIZE, DIM = 10, 8, 16


def small_net() -> nn.Module:
    """A stand-in embedding net: two convs and a linear head (≈ 90k multiply-adds per image)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),  # 16×8×8
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),  # 32×4×4
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * (SIZE // 2) ** 2, DIM),
    )


class Scaled(nn.Module):
    """uint8 in, as every backbone here takes it: scaled to [0, 1] batch by batch."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images.float() / 255.0)  # B×DIM


def timed(fn: Callable[[], Any], repeats: int) -> tuple[Any, float]:
    """``fn()``'s result and its best time of ``repeats`` (the small rows are noisy otherwise)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return out, best


def measure(n: int, backend: str, niter: int, repeats: int = 3) -> dict[str, float]:
    g = torch.Generator().manual_seed(n)
    images = torch.randint(0, 256, (n, 1, SIZE, SIZE), dtype=torch.uint8, generator=g)  # N×1×8×8, 64 B per item
    labels = np.random.default_rng(n).integers(0, K, n)
    ctx = RunContext(device=torch.device("cpu"), seed=0, backbone=Scaled(small_net()), progress=False)
    features, t_embed = timed(lambda: extract_features(images, ctx), repeats)  # N×DIM
    result, t_kmeans = timed(lambda: kmeans(features, K, niter=niter, restarts=1, seed=0, backend=backend, max_points_per_centroid=256), repeats)
    assignments = result.assignments.numpy()
    _, t_eval = timed(lambda: evaluate(labels, assignments), repeats)
    return {"embed": t_embed, "kmeans": t_kmeans, "evaluate": t_eval}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--backend", default="faiss", choices=["faiss", "torch"])
    parser.add_argument("--niter", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many timings per cell")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        import faiss

        faiss.omp_set_num_threads(args.threads)
    except ImportError:
        pass
    measure(2_000, args.backend, args.niter, 1)  # warm-up: first calls load kernels and libraries
    parts = ("embed", "kmeans", "evaluate")
    rows = [(n, measure(n, args.backend, args.niter, args.repeats)) for n in args.n]
    base_n, base = rows[0]
    print(f"K = {K}, D = {DIM}, {args.backend} k-means ({args.niter} iterations, 256 points per centroid), "
          f"{args.threads} thread(s), best of {args.repeats}\n")
    print("| N | " + " | ".join(f"{p} s" for p in parts) + " | " + " | ".join(f"{p} s/item ÷ first row" for p in parts) + " |")
    print("|---:|" + "---:|" * (2 * len(parts)))
    for n, t in rows:
        ratios = [(t[p] / n) / (base[p] / base_n) for p in parts]
        print(f"| {n:,} | " + " | ".join(f"{t[p]:.3f}" for p in parts) + " | " + " | ".join(f"{r:.2f}" for r in ratios) + " |")


if __name__ == "__main__":
    main()
