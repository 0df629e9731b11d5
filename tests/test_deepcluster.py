"""DeepCluster v1 / v2: the hand-checkable pieces (empty-cluster re-seeding, the uniform sampler,
PCA-whitening, the per-epoch top-layer reset) and short CLI runs, resume and bad values."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from clusterbench.distributed import DistInfo
from clusterbench.metrics import contingency, nmi_from
from clusterbench.methods.deep import EpochContext, InputShape
from clusterbench.methods.deepcluster import DeepCluster, pca_whiten, reseed_empty_clusters, uniform_cluster_order

BASE = ["dataset=synthetic", "dataset.num_samples=96", "hardware=cpu", "trainer.batch_size=32", "trainer.epochs=2", "trainer.eval_every=1",
        "method=deepcluster", "method.num_prototypes=8", "method.head_hidden=16", "method.feature_dim=8"]
SMALL = [*BASE, "backbone=strided", "backbone.widths=[8,16]"]
V2 = ["method.version=v2", "method.num_heads=2"]


# --- empty clusters ------------------------------------------------------------------------


def test_an_empty_cluster_is_moved_next_to_a_populated_one_which_is_split():
    # cluster 0: four points around (0, 0); cluster 1: one point (it cannot donate); cluster 2: no point
    x = torch.tensor([[-1.0, 0.1], [-1.2, -0.1], [1.0, 0.1], [1.2, -0.1], [10.0, 10.0]])
    labels = torch.tensor([0, 0, 0, 0, 1])
    centroids = torch.tensor([[0.0, 0.0], [10.0, 10.0], [100.0, -50.0]])
    centroids[0] = x[:4].mean(0) + torch.tensor([0.5, 0.0])  # off-centre, so the split is not degenerate
    new_c, new_l, empty = reseed_empty_clusters(x, centroids, labels, torch.Generator().manual_seed(0))
    assert empty == 1
    assert torch.bincount(new_l, minlength=3).min() >= 1  # no cluster is empty afterwards
    # the empty centroid now sits next to the donor (cluster 0): a ±1/1024 copy of it
    assert torch.allclose(new_c[2], centroids[0], rtol=2e-3) and torch.allclose(new_c[0], centroids[0], rtol=2e-3)
    assert not torch.equal(new_c[0], new_c[2])
    # the donor's points are shared between the two copies; the singleton is untouched
    assert set(new_l[:4].tolist()) == {0, 2} and int(new_l[4]) == 1 and torch.equal(new_c[1], centroids[1])
    assert torch.equal(labels, torch.tensor([0, 0, 0, 0, 1])) and centroids[2, 0] == 100.0  # inputs not modified


def test_reseeding_fills_several_empty_clusters_even_from_coinciding_points():
    x = torch.zeros(6, 3)  # identical points: a centroid split cannot separate them
    labels = torch.zeros(6, dtype=torch.long)
    centroids = torch.zeros(4, 3)
    centroids[1:] = torch.randn(3, 3, generator=torch.Generator().manual_seed(1))
    _, new_l, empty = reseed_empty_clusters(x, centroids, labels, torch.Generator().manual_seed(0))
    assert empty == 3 and torch.bincount(new_l, minlength=4).min() >= 1


# --- uniform sampling over clusters ----------------------------------------------------------


def _labels_90_9_1() -> torch.Tensor:
    # ids 0, 1 and 3 hold 90, 9 and 1 images; id 2 is empty; shuffled so the positions say nothing
    labels = torch.tensor([0] * 90 + [1] * 9 + [3])
    return labels[torch.randperm(100, generator=torch.Generator().manual_seed(3))]


def test_uniform_sampler_is_uniform_over_non_empty_clusters_and_exact():
    labels = _labels_90_9_1()
    order = uniform_cluster_order(labels, 300, torch.Generator().manual_seed(0))
    assert order.shape == (300,) and order.dtype == torch.long
    per_cluster = torch.bincount(labels[order], minlength=4)
    assert per_cluster.tolist() == [100, 100, 0, 100]  # the empty id 2 is skipped
    # the big cluster is sampled without replacement (100 > 90: every image, then repeats);
    # the small ones with replacement; the lone image of cluster 3 a hundred times
    assert torch.equal(torch.unique(order[labels[order] == 3]), torch.nonzero(labels == 3).flatten())
    assert len(torch.unique(order[labels[order] == 1])) == 9
    odd = uniform_cluster_order(labels, 301, torch.Generator().manual_seed(0))
    assert len(odd) == 301 and sorted(torch.bincount(labels[odd]).tolist()) == [0, 100, 100, 101]
    small = uniform_cluster_order(labels, 30, torch.Generator().manual_seed(0))
    big = small[labels[small] == 0]
    assert len(big) == 10 and len(torch.unique(big)) == 10  # enough images: no repeats
    # shuffled, not in cluster blocks
    assert len(set(labels[order[:30]].tolist())) == 3


def test_uniform_sampler_depends_only_on_the_generator():
    labels = _labels_90_9_1()
    a = uniform_cluster_order(labels, 64, torch.Generator().manual_seed(7))
    torch.manual_seed(123)  # the global stream must not matter
    b = uniform_cluster_order(labels, 64, torch.Generator().manual_seed(7))
    c = uniform_cluster_order(labels, 64, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


# --- PCA-whitening -------------------------------------------------------------------------


def test_pca_whitening_gives_identity_covariance_before_the_l2_step():
    g = torch.Generator().manual_seed(0)
    mixing = torch.randn(12, 12, generator=g) * torch.logspace(-1, 1, 12)  # correlated, scales 0.1–10
    x = torch.randn(3000, 12, generator=g) @ mixing + 5.0
    w = pca_whiten(x, 6)
    assert w.shape == (3000, 6)
    cov = torch.cov(w.T.double())
    assert torch.allclose(cov, torch.eye(6, dtype=torch.float64), atol=1e-3)
    assert torch.allclose(w.mean(0), torch.zeros(6), atol=1e-4)
    assert pca_whiten(x, 256).shape == (3000, 12)  # capped at the feature dimension
    # the components are the leading ones: the first carries the most of the original variance
    full = pca_whiten(x, 12)
    assert torch.allclose(full[:, :6].abs(), w.abs(), atol=1e-3)


# --- one epoch start by hand -----------------------------------------------------------------


def test_epoch_start_labels_every_image_and_resets_the_top_layer_and_its_momentum():
    from clusterbench.backbones.convnet import StridedConvNet

    torch.manual_seed(0)
    method = DeepCluster(num_prototypes=5, pca_dim=4)
    method.model = method.setup(StridedConvNet(1, 8, widths=[4, 8]), InputShape(1, 8))
    images = torch.randn(40, 1, 8, 8)
    opt = torch.optim.SGD(method.model.parameters(), lr=0.1, momentum=0.9)
    loss = method.model.head(method.model.backbone(images)).sum()
    loss.backward()
    opt.step()
    top = method.model.top_layer()
    assert top.weight in opt.state
    embed_all = torch.no_grad()(lambda fn: fn(images))  # as the engine's: no gradient
    ctx = EpochContext(0, 40, torch.device("cpu"), 0, DistInfo(), embed_all, opt)
    log = method.on_epoch_start(ctx)
    # no previous epoch: no nmi_prev; the cluster-size shares feed the training-health check
    assert set(log) == {"kmeans_loss", "empty_reseeded", "estep_empty_share", "estep_largest_share"}
    assert 0.0 <= log["estep_empty_share"] <= 1.0 and 0.0 < log["estep_largest_share"] <= 1.0
    labels = method.model.labels
    assert labels.shape == (1, 40) and torch.bincount(labels[0], minlength=5).min() >= 1
    assert top.weight not in opt.state and top.bias not in opt.state
    assert float(top.bias.detach().abs().max()) == 0.0 and 0.003 < float(top.weight.detach().std()) < 0.03
    backbone_param = next(method.model.backbone.parameters())
    assert backbone_param in opt.state  # the rest keeps its momentum
    first, before = top.weight.detach().clone(), labels[0].clone()
    log2 = method.on_epoch_start(EpochContext(1, 40, torch.device("cpu"), 0, DistInfo(), embed_all, opt))
    assert log2["nmi_prev"] == pytest.approx(nmi_from(contingency(before.numpy(), method.model.labels[0].numpy())))
    assert not torch.equal(first, top.weight)  # a fresh draw every epoch
    order = method.sample_order(40, 32, torch.Generator().manual_seed(0))
    assert len(order) == 32 and sorted(torch.bincount(labels[0][order], minlength=5).tolist()) == [6, 6, 6, 7, 7]


# --- end to end --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        (),
        ("dataset.channels=3", "augment=mocov2", "method.sobel=true", "method.head_layers=2", "method.kmeans_backend=torch", "method.pca_dim=null"),
        V2,
        (*V2, "augment=multicrop", "augment.local_crops=2", "trainer.precision=bf16"),
    ],
    ids=["v1", "v1-rgb-sobel-mlp-torch-nopca", "v2-two-heads", "v2-multicrop-bf16"],
)
def test_deepcluster_runs_a_few_steps(run_cli, extra):
    r = run_cli(*SMALL, *extra)
    assert r.code == 0, r.err
    m = r.metrics()
    assert m["method"] == "deepcluster" and m["n_samples"] == 96 and 0 <= m["acc"] <= 1 and m["method_info"]["steps"] == 6
    history = r.history()
    assert len(history) == 2 and all(np.isfinite(rec["loss"]) for rec in history)
    assert all(np.isfinite(rec["kmeans_loss"]) for rec in history) and "nmi_prev" in history[1]
    state = torch.load(r.run_dir / "checkpoint.pt", weights_only=True)["model"]
    assert state["labels"].shape == ((2 if "method.version=v2" in extra else 1), 96) and int(state["labels"].min()) >= 0
    if "method.version=v2" in extra:
        assert state["prototypes"].shape == (2, 8, 8) and state["bank"].shape == (2, 96, 8) and bool(state["bank_filled"])
        assert torch.allclose(state["prototypes"].norm(dim=2), torch.ones(2, 8), atol=1e-4)  # spherical centroids


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_resume_restores_labels_bank_and_prototypes(resume_runs, version):
    # a constant schedule: the learning rate of epoch 1 does not depend on the epoch count
    runs = resume_runs(*SMALL, f"method.version={version}", "trainer.schedule=constant", "trainer.eval_every=0", "seed=3", split=1, total=2)
    assert runs.whole.scores() == runs.resumed.scores()
    keys = ("loss", "kmeans_loss", "nmi_prev")  # epoch 2's nmi_prev compares with the restored labels
    assert [[rec.get(k) for k in keys] for rec in runs.whole.history()] == [[rec.get(k) for k in keys] for rec in runs.resumed.history()]


@pytest.mark.parametrize(
    "args,key",
    [
        (("method.version=v3",), "method.version"),
        (("method.num_prototypes=500",), "method.num_prototypes"),  # more clusters than the 96 images
        (("method.num_heads=3",), "method.num_heads"),  # v1 has one classifier
        (("method.version=v2", "method.temperature=0"), "method.temperature"),
        (("method.sobel=true", "backbone=mlp", "backbone.hidden=[16]"), "method.sobel"),
    ],
    ids=["version", "too-many-prototypes", "v1-heads", "temperature", "sobel-without-conv"],
)
def test_bad_values_are_one_line_errors(run_cli, args, key):
    r = run_cli(*(BASE if any(a.startswith("backbone=") for a in args) else SMALL), *args)
    assert r.code == 2
    lines = [line for line in r.err.splitlines() if line.strip() and not line.startswith("\r")]
    assert len(lines) == 1 and lines[0].startswith(f"error: {key}:"), r.err
    assert "Traceback" not in r.err + r.out
