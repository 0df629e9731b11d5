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


# --- in a run ---------------------------------------------------------------------------------

MOCO = ["dataset=synthetic", "dataset.num_samples=96", "hardware=cpu", "trainer.batch_size=32", "trainer.epochs=2", "trainer.eval_every=1",
        "backbone=strided", "backbone.widths=[8,16]", "method=moco", "method.queue_size=64", "method.head_hidden=32", "method.feature_dim=16"]


def test_probes_in_a_run_every_evaluation_and_recorded(run_cli):
    r = run_cli(*MOCO, "eval.knn=true", "eval.linear=true", "eval.knn_k=10")
    assert r.code == 0, r.err
    m = r.metrics()
    assert 0.0 <= m["knn_acc"] <= 1.0 and 0.0 <= m["linear_acc"] <= 1.0
    probes = m["probes"]
    assert probes["knn"] == {"k": 10, "temperature": 0.07, "similarity": "cosine", "weights": "exp(s/τ)"} and probes["linear"]["l2"] == 1e-4
    # synthetic has train and test splits: train → test, every test image scored once
    assert probes["split"].startswith("dataset split") and probes["n_train"] + probes["n_test"] == m["n_samples"]
    assert all("knn_acc" in rec and "linear_acc" in rec for rec in r.history())
    assert "probes" in m["timings"]


def test_probes_of_a_dataset_without_a_split_hold_out_a_seeded_share(run_cli):
    r = run_cli(*MOCO, "dataset.split=train", "eval.knn=true", "eval.knn_k=5", "eval.test_share=0.25")
    assert r.code == 0, r.err
    probes = r.metrics()["probes"]
    assert probes["split"] == "stratified 75%/25% split, seed 0" and "linear" not in probes


def test_the_probe_protocol_never_fits_on_test_images():
    from types import SimpleNamespace

    from clusterbench.probes.protocol import probe_protocol

    labels = torch.tensor([0, 1, 0, 1, 0, 1])
    data = SimpleNamespace(has_labels=True, labels=labels, from_test=torch.tensor([False, False, False, False, True, True]), num_classes=2)
    cfg = SimpleNamespace(knn=True, linear=True, knn_k=3, knn_temperature=0.07, linear_l2=0.0, linear_max_iter=50, test_share=0.2)
    protocol = probe_protocol(data, cfg, seed=0)
    assert protocol.train.tolist() == [0, 1, 2, 3] and protocol.test.tolist() == [4, 5]
    # test features that would be classified right only if the probes had seen them
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [0.1, 1.0], [0.0, 1.0], [1.0, 0.0]])
    assert protocol.scores(features)["knn_acc"] == 0.0 and protocol.scores(features)["linear_acc"] == 0.0


@pytest.mark.parametrize("override, key", [("eval.knn_k=0", "eval.knn_k"), ("eval.knn_temperature=0", "eval.knn_temperature"),
                                           ("eval.test_share=1.5", "eval.test_share")])
def test_impossible_probe_settings_are_one_line_errors(run_cli, override, key):
    r = run_cli(*MOCO, "eval.knn=true", override)
    assert r.code == 2 and key in r.err and r.err.count("\n") == 1, r.err
