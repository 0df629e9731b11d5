"""The probes (eval.knn, eval.linear) on 10⁶ synthetic features, against scikit-learn in the same run.

Features: ``--n`` memory / training rows and ``--queries`` scored rows of ``--dim`` dimensions,
``--classes`` Gaussian classes overlapping enough that neither probe is at 100 %. The same
normalised features go to both sides:

- kNN: clusterbench.probes.knn_predict (k 200, τ 0.07, cosine, weights exp(s/τ)) against
  ``KNeighborsClassifier(n_neighbors=k, algorithm="brute", metric="cosine", weights=exp((1-d)/τ))``,
  the same vote (cosine distance d = 1 − s), so the two should agree on nearly every query;
- linear: clusterbench.probes.fit_linear_probe (full-batch L-BFGS, λ 1e-4) against
  ``LogisticRegression(C=1/(λ·N), solver="lbfgs")``, the same objective.

Prints each side's seconds, the ratio and both accuracies.

    python benchmarks/probe_speed.py [--n 1000000] [--queries 10000] [--dim 128] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from clusterbench.probes.knn import knn_predict
from clusterbench.probes.linear import fit_linear_probe


NOISE = 4.0  # per-dimension σ around unit-variance centres: ≈ 85–90 % for both probes, not 100 %


def synthetic(n: int, dim: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` rows around the same ``classes`` centres (always seed 0); ``seed`` draws the rows."""
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(classes, (n,), generator=g)
    return F.normalize(centres[labels] + NOISE * torch.randn(n, dim, generator=g), dim=1), labels


def timed(fn):  # noqa: ANN001, ANN201 — a tiny local helper
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="memory / training rows")
    parser.add_argument("--queries", type=int, default=10_000, help="scored rows")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--k", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=0.07)
    parser.add_argument("--l2", type=float, default=1e-4)
    parser.add_argument("--max-iter", type=int, default=500)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default); scikit-learn uses its own")
    parser.add_argument("--skip-sklearn-knn", action="store_true", help="scikit-learn's brute kNN holds an N×chunk distance block: slow")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    train_x, train_y = synthetic(args.n, args.dim, args.classes, seed=1)
    test_x, test_y = synthetic(args.queries, args.dim, args.classes, seed=2)  # the same classes, rows never seen
    print(f"{args.n:,} × {args.dim} memory / training features, {args.queries:,} queries, {args.classes} classes, torch threads {torch.get_num_threads()}\n")
    print("| probe | clusterbench s | scikit-learn s | ratio (sklearn / ours) | ACC ours % | ACC sklearn % | same predictions % |")
    print("|---|---|---|---|---|---|---|")

    ours, t_ours = timed(lambda: knn_predict(train_x, train_y, test_x, args.classes, args.k, args.temperature))
    if args.skip_sklearn_knn:
        print(f"| kNN (k {args.k}) | {t_ours:.1f} | – | – | {100 * (ours == test_y).float().mean():.1f} | – | – |")
    else:
        tau = args.temperature
        knn = KNeighborsClassifier(n_neighbors=args.k, algorithm="brute", metric="cosine", weights=lambda d: np.exp((1.0 - d) / tau))
        theirs, t_theirs = timed(lambda: knn.fit(train_x.numpy(), train_y.numpy()).predict(test_x.numpy()))
        theirs = torch.from_numpy(theirs)
        print(f"| kNN (k {args.k}) | {t_ours:.1f} | {t_theirs:.1f} | {t_theirs / t_ours:.1f}× | {100 * (ours == test_y).float().mean():.2f} | "
              f"{100 * (theirs == test_y).float().mean():.2f} | {100 * (ours == theirs).float().mean():.2f} |")

    probe, t_ours = timed(lambda: fit_linear_probe(train_x, train_y, args.classes, args.l2, args.max_iter))
    ours = probe.predict(test_x)
    logreg = LogisticRegression(C=1.0 / (args.l2 * args.n), solver="lbfgs", max_iter=args.max_iter, tol=1e-7)
    theirs, t_theirs = timed(lambda: logreg.fit(train_x.numpy(), train_y.numpy()).predict(test_x.numpy()))
    theirs = torch.from_numpy(theirs)
    print(f"| linear (L-BFGS, {probe.iterations} evaluations; sklearn {int(np.max(logreg.n_iter_))} iterations) | {t_ours:.1f} | {t_theirs:.1f} | "
          f"{t_theirs / t_ours:.1f}× | {100 * (ours == test_y).float().mean():.2f} | {100 * (theirs == test_y).float().mean():.2f} | "
          f"{100 * (ours == theirs).float().mean():.2f} |")


if __name__ == "__main__":
    main()
