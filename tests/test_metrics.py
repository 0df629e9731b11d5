"""The evaluator against hand-worked cases and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from clusterbench.metrics import contingency, evaluate, hungarian_match, matched_confusion


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
