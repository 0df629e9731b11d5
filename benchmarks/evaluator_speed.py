"""Evaluator time on 10^6 samples, against calling scikit-learn's scorers one by one.

    python benchmarks/evaluator_speed.py [--n 1000000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix

from clusterbench.metrics import evaluate


def sklearn_baseline(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """The usual way: three scikit-learn calls, each rebuilding the contingency table."""
    table = contingency_matrix(y, p)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return {"nmi": normalized_mutual_info_score(y, p), "ari": adjusted_rand_score(y, p), "acc": table[rows, cols].sum() / len(y)}


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    g = np.random.default_rng(0)
    for k_true, k_pred in [(10, 10), (10, 100), (100, 1000)]:
        y = g.integers(0, k_true, args.n)
        p = np.where(g.random(args.n) < 0.5, y, g.integers(0, k_pred, args.n))
        ours = evaluate(y, p)
        ref = sklearn_baseline(y, p)
        assert all(abs(ours[m] - ref[m]) < 1e-9 for m in ref), (ours, ref)
        t_ours = best_of(lambda: evaluate(y, p), args.repeats)
        t_ref = best_of(lambda: sklearn_baseline(y, p), args.repeats)
        print(f"n={args.n:,} classes={k_true} clusters={k_pred}: evaluate {t_ours:.3f} s, "
              f"scikit-learn scorers {t_ref:.3f} s, ratio {t_ref / t_ours:.1f}× (same values)")


if __name__ == "__main__":
    main()
