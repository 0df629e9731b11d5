"""The evaluator against hand-worked cases and scikit-learn; the internal scores likewise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    adjusted_rand_score,
    calinski_harabasz_score,
    davies_bouldin_score,
    normalized_mutual_info_score,
    silhouette_score,
)

from clusterbench.metrics import (
    cluster_sizes,
    contingency,
    cosine_silhouette,
    effective_clusters,
    evaluate,
    hungarian_match,
    internal_scores,
    internal_subsample,
    matched_confusion,
)


def test_perfect_clustering_with_permuted_noncontiguous_ids():
    y = [0, 0, 1, 1, 2, 2]
    p = [7, 7, -3, -3, 42, 42]
    assert evaluate(y, p) == {"nmi": 1.0, "acc": 1.0, "ari": 1.0, "purity": 1.0}
    assert hungarian_match(contingency(y, p)) == {7: 0, -3: 1, 42: 2}


def test_hand_worked_three_by_three():
    # classes 0,0,0,1,1,1,2,2,2 ; clusters a a b | b b b | c c a
    y = [0, 0, 0, 1, 1, 1, 2, 2, 2]
    p = [0, 0, 1, 1, 1, 1, 2, 2, 0]
    # best map 0→0, 1→1, 2→2 matches 2 + 3 + 2 = 7 of 9
    # purity: cluster 0 {0,0,2} → 2, cluster 1 {0,1,1,1} → 3, cluster 2 {2,2} → 2 → 7/9
    r = evaluate(y, p)
    assert r["acc"] == pytest.approx(7 / 9)
    assert r["purity"] == pytest.approx(7 / 9)
    assert r["nmi"] == pytest.approx(normalized_mutual_info_score(y, p))
    assert r["ari"] == pytest.approx(adjusted_rand_score(y, p))


def test_more_clusters_than_classes_counts_unmatched_as_wrong():
    # two classes split into four pure clusters: one-to-one ACC can match only two of them
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    p = [0, 0, 1, 1, 2, 2, 3, 3]
    r = evaluate(y, p)
    assert r["acc"] == pytest.approx(4 / 8)
    assert r["purity"] == 1.0  # many-to-one: every cluster is pure


def test_fewer_clusters_than_classes():
    y = [0, 0, 1, 1, 2, 2]
    p = [0, 0, 1, 1, 1, 1]
    r = evaluate(y, p)
    assert r["acc"] == pytest.approx(4 / 6)
    assert r["purity"] == pytest.approx(4 / 6)


def test_one_cluster_is_majority_class_not_zero():
    y = [0, 0, 0, 1, 2, 2]
    r = evaluate(y, [5] * 6)
    assert r["acc"] == pytest.approx(3 / 6)
    assert r["purity"] == pytest.approx(3 / 6)
    assert r["nmi"] == 0.0 and r["ari"] == 0.0
    assert evaluate([1, 1, 1], [4, 4, 4]) == {"nmi": 1.0, "acc": 1.0, "ari": 1.0, "purity": 1.0}


def test_empty_clusters_are_simply_absent():
    # the method had K=5 but used only clusters 0 and 3: the table is 2×2, ACC still defined
    y = [0, 0, 1, 1]
    r = evaluate(y, [3, 3, 0, 0])
    assert r["acc"] == 1.0


@pytest.mark.parametrize("seed", range(5))
def test_matches_scikit_learn_on_random_labels(seed):
    g = np.random.default_rng(seed)
    y = g.integers(0, 7, 500)
    p = np.where(g.random(500) < 0.6, y, g.integers(0, 11, 500)) * 3 + 1  # noisy, remapped ids
    r = evaluate(y, p)
    assert r["nmi"] == pytest.approx(normalized_mutual_info_score(y, p), abs=1e-12)
    assert r["ari"] == pytest.approx(adjusted_rand_score(y, p), abs=1e-12)
    assert 0.0 < r["acc"] <= r["purity"] + 1e-12  # one-to-one can never beat many-to-one


def test_acc_equals_brute_force_on_small_tables():
    from itertools import permutations

    g = np.random.default_rng(0)
    for _ in range(20):
        y = g.integers(0, 3, 30)
        p = g.integers(0, 4, 30)
        table = contingency(y, p).table
        best = max(sum(table[i, perm[i]] for i in range(table.shape[0])) for perm in permutations(range(table.shape[1]), table.shape[0]))
        assert evaluate(y, p)["acc"] == pytest.approx(best / 30)


def test_accepts_tensors_and_rejects_bad_shapes():
    assert evaluate(torch.tensor([0, 1, 1]), torch.tensor([1, 0, 0]))["acc"] == 1.0
    with pytest.raises(ValueError, match="3 labels but y_pred has 2"):
        evaluate([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="empty"):
        evaluate([], [])


def test_matched_confusion_puts_matches_on_the_diagonal():
    y = [0, 0, 1, 1, 1, 2]
    p = [9, 9, 4, 4, 4, 7]
    c = matched_confusion(y, p)
    assert np.array_equal(np.diag(c.table), [2, 3, 1])
    assert list(c.clusters) == [9, 4, 7]


def test_matched_confusion_with_fewer_clusters_than_classes():
    # classes 0/1/2 of sizes 10/3/10, two clusters: the matched pairs (0,a) and (2,b) lead
    y = [0] * 10 + [1] * 3 + [2] * 10
    p = [5] * 10 + [5] * 3 + [8] * 10
    c = matched_confusion(y, p)
    assert list(c.classes) == [0, 2, 1] and list(c.clusters) == [5, 8]
    assert np.trace(c.table) / 23 == pytest.approx(evaluate(y, p)["acc"])


# -- internal scores: no labels ----------------------------------------------------------------


def two_blobs(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two tight blobs at right angles: cosine distance ≈ 0 within, ≈ 1 between."""
    g = np.random.default_rng(seed)
    a = np.repeat([0, 1], n // 2)
    centres = np.array([[10.0, 0.0, 0.0], [0.0, 10.0, 0.0]])
    return centres[a] + g.normal(scale=0.05, size=(n, 3)), a


def test_effective_clusters_is_the_perplexity_of_the_sizes():
    assert effective_clusters([5, 5]) == pytest.approx(2.0)
    assert effective_clusters([10, 0]) == pytest.approx(1.0)
    assert effective_clusters([3, 3, 3, 3, 0, 0]) == pytest.approx(4.0)  # empty clusters do not count
    # sizes 2 and 6: exp(-(¼ ln ¼ + ¾ ln ¾)) = 1.7548
    assert effective_clusters([2, 6]) == pytest.approx(1.7548, abs=1e-4)
    assert effective_clusters([0, 0]) == 0.0


def test_cluster_sizes_index_by_id_and_keep_empty_clusters():
    assert cluster_sizes([2, 2, 0, 2]).tolist() == [1, 0, 3]
    assert cluster_sizes([2, 2, 0, 2], num_clusters=5).tolist() == [1, 0, 3, 0, 0]
    with pytest.raises(ValueError, match="≥ 0"):
        cluster_sizes([0, -1])


def test_internal_scores_of_two_separated_blobs():
    x, a = two_blobs()
    r = internal_scores(x, a)
    assert r["silhouette"] == pytest.approx(1.0, abs=1e-3)
    assert r["davies_bouldin"] == pytest.approx(0.0, abs=0.02)
    assert r["calinski_harabasz"] > 1e4
    assert r["cluster_sizes"] == [100, 100] and r["effective_clusters"] == pytest.approx(2.0)
    assert r["internal_sample"] == 200
    # the same points split at random: no structure, silhouette near 0
    shuffled = np.random.default_rng(1).permutation(a)
    assert abs(internal_scores(x, shuffled)["silhouette"]) < 0.05


@pytest.mark.parametrize("seed", range(4))
def test_cosine_silhouette_equals_scikit_learn(seed):
    g = np.random.default_rng(seed)
    x = g.normal(size=(300, 6)) + np.repeat(g.normal(scale=2.0, size=(5, 6)), 60, axis=0)
    a = np.repeat(np.arange(5), 60)
    a[:20] = g.integers(0, 5, 20)
    x[:3] = 0.0  # all-zero rows: distance 1 from everything in scikit-learn's convention
    a[299] = 5  # a singleton cluster scores 0
    assert cosine_silhouette(x, a) == pytest.approx(silhouette_score(x, a, metric="cosine"), abs=1e-12)


def test_internal_scores_use_one_bounded_seeded_subsample_like_scikit_learn():
    g = np.random.default_rng(0)
    a = g.integers(0, 4, 3000)
    x = g.normal(size=(3000, 8)) + 3.0 * np.eye(8)[a]
    r = internal_scores(x, a, max_points=500, seed=3, num_clusters=6)
    keep = internal_subsample(3000, 500, seed=3)
    assert r["internal_sample"] == len(keep) == len(np.unique(keep)) == 500
    assert r["silhouette"] == pytest.approx(silhouette_score(x[keep], a[keep], metric="cosine"), abs=1e-12)
    assert r["calinski_harabasz"] == pytest.approx(calinski_harabasz_score(x[keep], a[keep]))
    assert r["davies_bouldin"] == pytest.approx(davies_bouldin_score(x[keep], a[keep]))
    # sizes and effective K count every point, and the empty clusters 4 and 5
    assert r["cluster_sizes"] == np.bincount(a, minlength=6).tolist() and sum(r["cluster_sizes"]) == 3000
    assert r["effective_clusters"] == pytest.approx(effective_clusters(np.bincount(a)))
    assert internal_scores(x, a, max_points=500, seed=3) == {**r, "cluster_sizes": r["cluster_sizes"][:4]}
    assert internal_scores(x, a, max_points=500, seed=4)["silhouette"] != r["silhouette"]


def test_internal_scores_degenerate_cases_are_none_not_a_crash():
    x, _ = two_blobs(50)
    one = internal_scores(x, np.zeros(50, dtype=int))  # a single cluster
    assert one["silhouette"] is one["calinski_harabasz"] is one["davies_bouldin"] is None
    assert one["effective_clusters"] == 1.0 and one["cluster_sizes"] == [50]
    constant = internal_scores(np.ones((40, 4)), np.arange(40) % 2)  # features that never vary
    assert constant["silhouette"] is constant["calinski_harabasz"] is constant["davies_bouldin"] is None
    assert constant["effective_clusters"] == pytest.approx(2.0)
    assert internal_scores(x[:5], np.arange(5))["silhouette"] is None  # every point its own cluster
    # a tiny cluster missed by the subsample leaves one cluster in it: undefined, sizes still whole
    rare = internal_scores(np.random.default_rng(0).normal(size=(1000, 3)), np.r_[np.zeros(999, int), 1], max_points=10)
    assert rare["silhouette"] is None and rare["cluster_sizes"] == [999, 1]


def test_internal_scores_take_tensors_and_reject_bad_input():
    x, a = two_blobs(40)
    assert internal_scores(torch.from_numpy(x).float(), torch.from_numpy(a))["silhouette"] == pytest.approx(1.0, abs=1e-3)
    images = torch.randint(0, 256, (40, 1, 4, 4), dtype=torch.uint8)  # raw pixels work as features too
    assert internal_scores(images.reshape(40, -1), a)["silhouette"] is not None
    with pytest.raises(ValueError, match="do not match"):
        internal_scores(x[:-1], a)
    with pytest.raises(ValueError, match="NaN"):
        internal_scores(np.where(np.arange(40)[:, None] == 3, np.nan, x), a)
    with pytest.raises(ValueError, match="empty"):
        internal_scores(np.zeros((0, 3)), np.zeros(0, int))
