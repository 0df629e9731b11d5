"""Time of the faiss and torch k-means back-ends against scikit-learn's KMeans, in one run.

All three do the same work: k-means++ seeding, then exactly `--niter` Lloyd iterations
(convergence stop off), one restart, K = 10, on raw pixels in [0, 1]. Ratios are against
scikit-learn measured in the same process; the best of `--repeats` is kept.

    python benchmarks/kmeans_backends.py [--root ../shared/data] [--datasets mnist cifar10]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.cluster import KMeans

from _common import SHARED_DATA
from clusterbench.cluster import kmeans
from clusterbench.data.cifar import load_cifar10
from clusterbench.data.mnist import load_mnist
from clusterbench.metrics import evaluate

LOADERS = {"mnist": load_mnist, "cifar10": load_cifar10}


def best_time(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", default=str(SHARED_DATA))
    parser.add_argument("--datasets", nargs="+", default=["mnist", "cifar10"], choices=sorted(LOADERS))
    parser.add_argument("--niter", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"torch threads {torch.get_num_threads()}, {args.niter} Lloyd iterations, 1 restart, K=10")
    for name in args.datasets:
        data = LOADERS[name](args.root, "all", False)
        x = (data.images.flatten(1).float() / 255).numpy()
        y = data.labels.numpy()
        runs = {
            "scikit-learn": lambda: KMeans(10, init="k-means++", n_init=1, max_iter=args.niter, tol=0, algorithm="lloyd", random_state=0).fit_predict(x),
            "faiss": lambda: kmeans(x, 10, niter=args.niter, tol=0, backend="faiss", seed=0).assignments.numpy(),
            "torch": lambda: kmeans(x, 10, niter=args.niter, tol=0, backend="torch", seed=0).assignments.numpy(),
        }
        results = {k: best_time(fn, args.repeats) for k, fn in runs.items()}
        base = results["scikit-learn"][0]
        print(f"\n{name}: {x.shape[0]:,} × {x.shape[1]}")
        print("| back-end | seconds | speed vs scikit-learn | ACC % |\n|---|---|---|---|")
        for k, (t, ids) in results.items():
            print(f"| {k} | {t:.2f} | {base / t:.2f}× | {100 * evaluate(y, ids)['acc']:.1f} |")


if __name__ == "__main__":
    main()
