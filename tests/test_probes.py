"""The label-using probes on frozen features: the weighted kNN against a brute-force loop, the
linear probe on separable data and against scikit-learn's optimum, and the stratified split."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from clusterbench.probes import fit_linear_probe, knn_predict, stratified_split


def brute_force_knn(memory, labels, queries, num_classes, k, temperature):
    out = []
    for q in queries:
        sims = []
        for m, y in zip(memory, labels):
            cos = float(np.dot(q, m) / (np.linalg.norm(q) * np.linalg.norm(m)))
            sims.append((cos, int(y)))
        sims.sort(key=lambda t: -t[0])
        votes = [0.0] * num_classes
        for cos, y in sims[:k]:
            votes[y] += math.exp(cos / temperature)
        out.append(int(np.argmax(votes)))
    return out


@pytest.mark.parametrize("k, temperature", [(1, 0.07), (5, 0.07), (7, 1.0), (100, 0.5)])
def test_knn_matches_a_brute_force_loop(k, temperature, monkeypatch):
    from clusterbench.probes import knn as K

    monkeypatch.setattr(K, "CHUNK", 4)  # several query blocks
    rng = np.random.default_rng(0)
    memory, queries = rng.normal(size=(30, 5)), rng.normal(size=(11, 5))
    labels = rng.integers(0, 3, size=30)
    got = knn_predict(torch.tensor(memory), torch.tensor(labels), torch.tensor(queries), 3, k, temperature)
    assert got.tolist() == brute_force_knn(memory, labels, queries, 3, k, temperature)


def test_knn_weights_close_neighbours_more_than_many_far_ones():
    # one memory point of class 1 right at the query, two of class 0 further away: with a small
    # τ the close one outweighs the two (a plain majority vote would say 0)
    memory = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.8, -0.6]])
    labels = torch.tensor([1, 0, 0])
    query = torch.tensor([[1.0, 0.0]])
    assert knn_predict(memory, labels, query, 2, k=3, temperature=0.07).tolist() == [1]
    assert knn_predict(memory, labels, query, 2, k=3, temperature=100.0).tolist() == [0]


def test_the_linear_probe_separates_separable_classes():
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(4, 16) * 3.0
    y = torch.arange(4).repeat_interleave(50)
    x = centres[y] + 0.3 * torch.randn(200, 16, generator=g)
    probe = fit_linear_probe(x, y, 4, l2=1e-4)
    assert (probe.predict(x) == y).float().mean().item() == 1.0
    test = centres[y] + 0.3 * torch.randn(200, 16, generator=g)
    assert (probe.predict(test) == y).float().mean().item() > 0.99


def test_the_linear_probe_reaches_scikit_learns_optimum():
    sklearn = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 8))
    y = (x[:, 0] + 0.5 * x[:, 1] + 0.3 * rng.normal(size=300) > 0).astype(int) + (x[:, 2] > 1).astype(int)
    lam = 1e-2
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    ref = sklearn.LogisticRegression(C=1.0 / (lam * len(x)), tol=1e-10, max_iter=10_000).fit(xn, y)
    probe = fit_linear_probe(torch.tensor(x), torch.tensor(y), 3, l2=lam)
    assert np.allclose(probe.weight.numpy(), ref.coef_, atol=2e-3)
    assert np.allclose(probe.bias.numpy(), ref.intercept_, atol=2e-3)


def test_the_stratified_split_keeps_class_shares_and_is_seeded():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    train, test = stratified_split(labels, 0.2, seed=3)
    assert len(set(train) | set(test)) == 100 and not set(train) & set(test)
    assert [int((labels[test] == c).sum()) for c in range(3)] == [10, 6, 4]
    again = stratified_split(labels, 0.2, seed=3)
    assert np.array_equal(again[1], test) and not np.array_equal(stratified_split(labels, 0.2, seed=4)[1], test)
