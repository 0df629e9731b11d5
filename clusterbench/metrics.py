"""Clustering metrics: NMI, ACC (Hungarian), ARI and purity, all from one contingency table.

Every metric is a function of the classes × clusters contingency table, so it is built once
(one ``np.unique`` per label array and one ``bincount``) and the four scores are read off it.
That keeps 10^6 samples well under a second, where calling scikit-learn's three scorers
separately would rebuild the table three times.

Conventions (as in the MiCE and DEC papers, and scikit-learn):
- NMI uses the arithmetic mean of the two entropies (scikit-learn's default).
- ACC is the best *one-to-one* mapping of clusters to classes on the rectangular table
  (``scipy.optimize.linear_sum_assignment``). With more clusters than classes the unmatched
  clusters count as wrong; with fewer, the unmatched classes do. It is never silently 0.
- Purity maps every cluster to its majority class (many-to-one), the over-clustering score.
All values are fractions in [0, 1].

Without labels (a user's own images) none of those exist; ``internal_scores`` judges the
clustering from the features alone: silhouette, Calinski–Harabasz, Davies–Bouldin, and how
evenly the points spread over the clusters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.special import comb
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, mutual_info_score


@dataclass(frozen=True)
class Contingency:
    """Counts of (class, cluster) pairs, with the original ids of the rows and columns."""

    table: np.ndarray  # n_classes × n_clusters, int64
    classes: np.ndarray  # row r holds true label classes[r]
    clusters: np.ndarray  # column c holds predicted id clusters[c]


def _as_labels(y: object, name: str) -> np.ndarray:
    arr = np.asarray(y.detach().cpu() if hasattr(y, "detach") else y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def contingency(y_true: object, y_pred: object) -> Contingency:
    """The classes × clusters count table. Ids may be any integers, non-contiguous or negative."""
    t, p = _as_labels(y_true, "y_true"), _as_labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} labels but y_pred has {p.size}")
    if t.size == 0:
        raise ValueError("cannot evaluate an empty clustering")
    classes, ti = np.unique(t, return_inverse=True)
    clusters, pi = np.unique(p, return_inverse=True)
    counts = np.bincount(ti.ravel() * len(clusters) + pi.ravel(), minlength=len(classes) * len(clusters))
    return Contingency(counts.reshape(len(classes), len(clusters)), classes, clusters)


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def nmi_from(c: Contingency) -> float:
    """Normalised mutual information, arithmetic normalisation (scikit-learn's limit cases)."""
    n_classes, n_clusters = c.table.shape
    if n_classes == n_clusters == 1:
        return 1.0  # both put everything together: identical partitions
    mi = mutual_info_score(None, None, contingency=c.table)
    h = 0.5 * (_entropy(c.table.sum(1)) + _entropy(c.table.sum(0)))
    if mi <= 0.0 or h <= 0.0:
        return 0.0
    return float(min(1.0, mi / h))


def ari_from(c: Contingency) -> float:
    """Adjusted Rand index (Hubert & Arabie 1985) from pair counts of the table."""
    n = int(c.table.sum())
    pairs = float(comb(c.table, 2).sum())
    rows = float(comb(c.table.sum(1), 2).sum())
    cols = float(comb(c.table.sum(0), 2).sum())
    total = float(comb(n, 2))
    expected = rows * cols / total if total > 0 else 0.0
    max_index = 0.5 * (rows + cols)
    if max_index == expected:
        return 1.0  # both partitions trivial in the same way (scikit-learn's convention)
    return float((pairs - expected) / (max_index - expected))


def hungarian_match(c: Contingency) -> dict[int, int]:
    """The one-to-one cluster → class mapping that maximises matched samples."""
    rows, cols = linear_sum_assignment(c.table, maximize=True)
    return {int(c.clusters[j]): int(c.classes[i]) for i, j in zip(rows, cols)}


def acc_from(c: Contingency) -> float:
    """Clustering accuracy: matched samples / all samples under the Hungarian mapping."""
    rows, cols = linear_sum_assignment(c.table, maximize=True)
    return float(c.table[rows, cols].sum() / c.table.sum())


def purity_from(c: Contingency) -> float:
    """Majority-vote purity: each cluster counts its most frequent class as correct."""
    return float(c.table.max(axis=0).sum() / c.table.sum())


def evaluate(y_true: object, y_pred: object) -> dict[str, float]:
    """NMI, ACC, ARI and purity of predicted cluster ids against true labels, as fractions.

    Accepts numpy arrays, lists or torch tensors of integer ids; the number of clusters may
    differ from the number of classes, ids need not be contiguous, and clusters may be empty
    (absent from ``y_pred``) or single.
    """
    c = contingency(y_true, y_pred)
    return {"nmi": nmi_from(c), "acc": acc_from(c), "ari": ari_from(c), "purity": purity_from(c)}


def matched_confusion(y_true: object, y_pred: object) -> Contingency:
    """The contingency table reordered so every Hungarian-matched (class, cluster) pair sits
    on the diagonal: matched pairs first, then unmatched classes (fewer clusters than classes)
    or unmatched clusters (more clusters than classes), largest first. For plots.
    """
    c = contingency(y_true, y_pred)
    rows, cols = linear_sum_assignment(c.table, maximize=True)
    order = np.argsort(rows, kind="stable")
    rows, cols = rows[order], cols[order]
    rest_rows = [i for i in np.argsort(-c.table.sum(1), kind="stable") if i not in set(rows)]
    rest_cols = [j for j in np.argsort(-c.table.sum(0), kind="stable") if j not in set(cols)]
    row_perm = np.array([*rows, *rest_rows], dtype=np.int64)
    col_perm = np.array([*cols, *rest_cols], dtype=np.int64)
    return Contingency(c.table[np.ix_(row_perm, col_perm)], c.classes[row_perm], c.clusters[col_perm])


# --------------------------------------------------------------------------------------------
# internal scores: no labels needed

INTERNAL_SCORES = ("silhouette", "calinski_harabasz", "davies_bouldin", "effective_clusters")


def cluster_sizes(assignments: object, num_clusters: Optional[int] = None) -> np.ndarray:
    """Points per cluster id, index = id; length max(id) + 1, or ``num_clusters`` when larger,
    so clusters a method left empty show up as zeros."""
    a = _as_labels(assignments, "assignments").astype(np.int64, copy=False)
    if a.size and a.min() < 0:
        raise ValueError(f"cluster ids must be ≥ 0, got {int(a.min())}")
    return np.bincount(a, minlength=num_clusters or 0)


def effective_clusters(sizes: object) -> float:
    """exp(entropy) of the size distribution: K for K equal clusters, 1 when one holds all.

    A perplexity, so it reads as "how many clusters are really in use": the number to watch
    for collapse when there are no labels to score against.
    """
    counts = np.asarray(sizes, dtype=np.float64)
    return float(np.exp(_entropy(counts))) if counts.sum() > 0 else 0.0


def cosine_silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette with cosine distance, exact, in O(N·K·D) instead of O(N²·D).

    For L2-normalised rows the cosine distance 1 − x·y is linear in y, so a point's mean
    distance to a cluster is 1 − x·(sum of the cluster's rows) / size: one N×K product
    replaces the N×N distance matrix (10,000 points: milliseconds instead of scikit-learn's
    3 s on 2 cores). Conventions follow ``sklearn.metrics.silhouette_score(metric="cosine")``:
    all-zero rows are at distance 1 from everything, a point alone in its cluster scores 0.
    ``labels`` must be 0..K−1 with 2 ≤ K < N.
    """
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norms > 0, norms, 1.0)
    k = int(labels.max()) + 1
    sizes = np.bincount(labels, minlength=k).astype(np.float64)
    sums = np.zeros((k, x.shape[1]))
    np.add.at(sums, labels, x)
    self_dot = (x * x).sum(1)  # 1, or 0 for an all-zero row
    total = 0.0
    for start in range(0, len(x), 4096):  # bounds the N×K block for large K
        rows = slice(start, start + 4096)
        own = labels[rows]
        mean_dist = 1.0 - (x[rows] @ sums.T) / np.maximum(sizes, 1.0)  # chunk × K
        ar = np.arange(len(own))
        n_own = sizes[own]
        # own cluster: leave the point itself out (its distance to itself is 0)
        a = ((n_own - 1.0) - (x[rows] * sums[own]).sum(1) + self_dot[rows]) / np.maximum(n_own - 1.0, 1.0)
        mean_dist[ar, own] = np.inf
        mean_dist[:, sizes == 0] = np.inf
        b = mean_dist.min(1)
        denom = np.maximum(a, b)
        s = np.where((n_own > 1) & (denom > 0), (b - a) / np.where(denom > 0, denom, 1.0), 0.0)
        total += float(s.sum())
    return total / len(x)


def internal_subsample(n: int, max_points: int, seed: int) -> np.ndarray:
    """The sorted indices ``internal_scores`` computes its pairwise scores on: all n points,
    or a uniform seeded draw of ``max_points`` of them (the mean silhouette of a uniform
    sample estimates the whole set's without bias)."""
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def internal_scores(
    features: object,
    assignments: object,
    *,
    max_points: int = 10_000,
    seed: int = 0,
    num_clusters: Optional[int] = None,
) -> dict[str, Any]:
    """Label-free scores of a clustering, for runs on images without labels.

    - ``silhouette`` (cosine, in [−1, 1], higher is better): cosine because the deep methods
      cluster L2-normalised features, where only directions matter;
    - ``calinski_harabasz`` (higher is better) and ``davies_bouldin`` (≥ 0, lower is better):
      scikit-learn's, Euclidean on the features as given;
    - ``cluster_sizes`` (index = cluster id) and ``effective_clusters`` (exp of the entropy of
      the sizes), over all points;
    - ``internal_sample``: how many points the first three were computed on.

    The first three use one seeded, uniform subsample of at most ``max_points`` points (the
    same for all three), so the cost is bounded however large the dataset. Each is None where
    it is undefined: fewer than two clusters (or as many clusters as points) in the
    subsample, or features that do not vary at all (every score would be a meaningless 0 or
    1 there). Pass the features the clusters were found in.
    """
    x = np.asarray(features.detach().cpu() if hasattr(features, "detach") else features)
    if x.ndim == 1:
        x = x[:, None]
    a = _as_labels(assignments, "assignments")
    if x.ndim != 2 or x.shape[0] != a.size:
        raise ValueError(f"features of shape {x.shape} do not match {a.size} assignments")
    if a.size == 0:
        raise ValueError("cannot score an empty clustering")
    if max_points < 2:
        raise ValueError(f"max_points must be at least 2, got {max_points}")
    sizes = cluster_sizes(a, num_clusters)
    keep = internal_subsample(a.size, max_points, seed)
    xs = np.asarray(x[keep], dtype=np.float64)
    if not np.isfinite(xs).all():
        raise ValueError("features contain NaN or inf")
    _, labels = np.unique(a[keep], return_inverse=True)
    labels = labels.ravel()
    k = int(labels.max()) + 1
    defined = 2 <= k < len(keep) and bool(np.ptp(xs, axis=0).any())
    return {
        "silhouette": cosine_silhouette(xs, labels) if defined else None,
        "calinski_harabasz": float(calinski_harabasz_score(xs, labels)) if defined else None,
        "davies_bouldin": float(davies_bouldin_score(xs, labels)) if defined else None,
        "cluster_sizes": [int(c) for c in sizes],
        "effective_clusters": effective_clusters(sizes),
        "internal_sample": int(len(keep)),
    }
