"""k-means back-ends: agreement with each other and with scikit-learn, edge cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans as SKKMeans
from sklearn.datasets import make_blobs

from clusterbench.cluster import assign, gmm, kmeans
from clusterbench.cluster.kmeans import split_empty_clusters, squared_norms
from clusterbench.metrics import evaluate


@pytest.fixture(scope="module")
def blobs():
    x, y = make_blobs(n_samples=1200, n_features=10, centers=6, cluster_std=1.0, random_state=0)
    return x.astype(np.float32), y


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_recovers_blobs_and_matches_scikit_learn(blobs, backend):
    x, y = blobs
    r = kmeans(x, 6, backend=backend, restarts=3, seed=0)
    assert evaluate(y, r.assignments)["ari"] > 0.99
    sk = SKKMeans(6, n_init=3, random_state=0).fit(x)
    assert r.inertia == pytest.approx(sk.inertia_, rel=1e-4)
    assert r.centroids.shape == (6, 10) and r.assignments.dtype == torch.int64


def test_backends_agree_exactly_from_the_same_seed(blobs):
    x, _ = blobs
    for init in ("kmeans++", "random"):
        a = kmeans(x, 6, backend="faiss", seed=4, init=init)
        b = kmeans(x, 6, backend="torch", seed=4, init=init)
        assert evaluate(a.assignments, b.assignments)["ari"] == 1.0
        assert torch.allclose(a.centroids, b.centroids, atol=1e-4)
        assert a.inertia == pytest.approx(b.inertia, rel=1e-5)


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_spherical_returns_unit_centroids(blobs, backend):
    x, _ = blobs
    r = kmeans(x, 6, backend=backend, spherical=True)
    assert torch.allclose(r.centroids.norm(dim=1), torch.ones(6), atol=1e-5)
    xn = torch.nn.functional.normalize(torch.from_numpy(x), dim=1)
    assert torch.equal(r.assignments, (xn @ r.centroids.T).argmax(1))


def test_same_seed_same_result_and_restarts_keep_the_best(blobs):
    x, _ = blobs
    a, b = kmeans(x, 6, backend="torch", seed=7), kmeans(x, 6, backend="torch", seed=7)
    assert torch.equal(a.assignments, b.assignments)
    # restart 0 is the same whatever the count, so more restarts can only lower the inertia
    one = kmeans(x, 6, backend="torch", seed=0, restarts=1, init="random")
    many = kmeans(x, 6, backend="torch", seed=0, restarts=8, init="random")
    assert many.inertia <= one.inertia + 1e-3
    assert len({round(kmeans(x, 6, backend="torch", seed=s, init="random").inertia, 1) for s in range(8)}) > 1  # seeds differ


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_a_sample_bound_above_n_changes_nothing(blobs, backend):
    x, _ = blobs  # 1,200 points, K = 6: 200 per centroid
    a = kmeans(x, 6, backend=backend, restarts=2, seed=1)
    b = kmeans(x, 6, backend=backend, restarts=2, seed=1, max_points_per_centroid=200)
    assert torch.equal(a.assignments, b.assignments) and torch.equal(a.centroids, b.centroids) and a.inertia == b.inertia


def test_a_sample_bound_below_n_fits_on_a_sample_and_assigns_everything(blobs):
    x, y = blobs
    runs = {backend: kmeans(x, 6, backend=backend, seed=2, max_points_per_centroid=20) for backend in ("faiss", "torch")}
    for r in runs.values():
        assert r.assignments.shape == (len(x),) and evaluate(y, r.assignments)["ari"] > 0.99
    assert evaluate(runs["faiss"].assignments, runs["torch"].assignments)["ari"] == 1.0  # the same rows drawn for both
    again = kmeans(x, 6, backend="torch", seed=2, max_points_per_centroid=20)
    assert torch.equal(again.assignments, runs["torch"].assignments)
    assert not torch.equal(kmeans(x, 6, backend="torch", seed=2, max_points_per_centroid=20, niter=1).centroids,
                           kmeans(x, 6, backend="torch", seed=2, niter=1).centroids)  # a sample really was drawn


def test_squared_norms_match_the_one_shot_sum_bit_for_bit():
    x = torch.rand(3000, 2000)  # several blocks of rows
    assert torch.equal(squared_norms(x), (x * x).sum(1))


def test_assign_is_the_nearest_centroid():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [11.0, 1.0]])
    c = torch.tensor([[0.5, 0.0], [10.5, 0.5]])
    labels, inertia = assign(x, c)
    assert labels.tolist() == [0, 0, 1, 1]
    assert inertia == pytest.approx(0.25 + 0.25 + 0.5 + 0.5)


def test_empty_cluster_is_refilled_by_splitting_a_populated_one():
    centroids = torch.tensor([[0.0, 0.0], [4.0, 4.0], [100.0, 100.0]])
    counts = torch.tensor([5, 3, 0])
    split_empty_clusters(centroids, counts, torch.Generator().manual_seed(0))
    assert int(counts.sum()) == 8 and int(counts.min()) > 0
    donor = 0 if torch.allclose(centroids[2], torch.tensor([0.0, 0.0])) else 1
    assert torch.allclose(centroids[2], centroids[donor] * (1 + 1 / 1024) / (1 - 1 / 1024))


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_duplicate_points_still_give_k_clusters_without_crashing(backend):
    x = np.repeat(np.eye(3, dtype=np.float32), 10, axis=0)  # 3 distinct points, K=5
    r = kmeans(x, 5, backend=backend, seed=1)  # k-means++ takes the 3 distinct points first
    assert r.assignments.shape == (30,) and r.inertia == pytest.approx(0.0, abs=1e-3)  # split copies sit ±1/1024 apart


def test_rejects_impossible_requests():
    x = np.zeros((4, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="cannot make 5 clusters from 4 points"):
        kmeans(x, 5)
    with pytest.raises(ValueError, match="backend"):
        kmeans(x, 2, backend="sklearn")
    with pytest.raises(ValueError, match="N×D"):
        kmeans(np.zeros(4), 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_torch_backend_runs_on_the_gpu(blobs):
    x, y = blobs
    r = kmeans(torch.from_numpy(x).cuda(), 6, backend="torch")
    assert r.assignments.is_cuda and evaluate(y, r.assignments.cpu())["ari"] > 0.99


def test_gmm_recovers_blobs(blobs):
    x, y = blobs
    r = gmm(x, 6, covariance_type="diag", seed=0)
    assert evaluate(y, r.assignments)["ari"] > 0.99 and r.converged
