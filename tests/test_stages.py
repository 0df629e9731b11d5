"""Clustering stages (cluster=kmeans|gmm|umap|own) after training, on a finished run's folder
(clusterbench-recluster), and their states assigning new points."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from clusterbench.recluster import main as recluster_main
from clusterbench.stages.umap import place

MOCO = ["dataset=synthetic", "dataset.num_samples=96", "hardware=cpu", "trainer.batch_size=32", "trainer.epochs=2", "trainer.eval_every=0",
        "backbone=strided", "backbone.widths=[8,16]", "method=moco", "method.queue_size=64", "method.head_hidden=32", "method.feature_dim=16"]
UMAP_SMALL = ["cluster=umap", "cluster.n_neighbors=10", "cluster.n_components=4"]


@pytest.fixture
def run_recluster(monkeypatch, capsys):
    from conftest import call_entry_point

    def run(*args: str) -> tuple[int, str, str]:
        return call_entry_point(recluster_main, ["clusterbench-recluster", *args, "--no-progress"], monkeypatch, capsys)

    return run


def clusters_of(folder) -> list[str]:
    with open(folder / "assignments.csv", newline="") as f:
        return [row["cluster"] for row in csv.DictReader(f)]


def test_the_kmeans_stage_is_the_default_read_out(run_cli):
    plain, staged = run_cli(*MOCO), run_cli(*MOCO, "cluster=kmeans")
    assert plain.code == 0 and staged.code == 0, staged.err
    assert clusters_of(plain.run_dir) == clusters_of(staged.run_dir) and plain.scores() == staged.scores()
    assert plain.metrics()["cluster"] is None
    assert staged.metrics()["cluster"] == {"name": "kmeans", "restarts": 3, "niter": 50, "normalize": True, "backend": "faiss", "minutes": None}


@pytest.mark.parametrize("stage", [["cluster=gmm", "cluster.pca_dim=8"], UMAP_SMALL], ids=["gmm", "umap"])
def test_a_stage_in_the_run_equals_the_stage_on_the_finished_run(run_cli, run_recluster, run_predict, tmp_path, stage):
    pytest.importorskip("umap") if "cluster=umap" in stage else None
    staged = run_cli(*MOCO, *stage)
    assert staged.code == 0, staged.err
    m = staged.metrics()
    assert m["cluster"]["name"] == stage[0].split("=")[1] and "cluster_stage" in m["timings"]
    plain = run_cli(*MOCO)
    code, out, err = run_recluster(str(plain.run_dir), *stage, "--out", str(tmp_path / "again"))
    assert code == 0, err
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert clusters_of(tmp_path / "again") == clusters_of(staged.run_dir)
    assert (again["nmi"], again["acc"], again["ari"]) == staged.scores()
    assert again["variant"] == m["variant"] and "cluster=" in m["variant"] and again["cluster"] == m["cluster"] and "stage" in out
    # the stage's folder predicts by itself, and gives the run's images their assignments back
    code, _, err = run_predict(str(tmp_path / "again"), "--out", str(tmp_path / "pred"))
    assert code == 0, err
    assert clusters_of(tmp_path / "pred") == clusters_of(staged.run_dir)
    # another stage on the staged run replaces its stage: k-means gives the plain run's clusters
    code, _, err = run_recluster(str(staged.run_dir), "cluster=kmeans", "--out", str(tmp_path / "km"))
    assert code == 0, err
    assert clusters_of(tmp_path / "km") == clusters_of(plain.run_dir)


def test_own_assignments_of_swav_and_mice(run_cli):
    base = [a for a in MOCO if not a.startswith("method")]
    swav = run_cli(*base, "method=swav", "method.head_hidden=32", "method.feature_dim=16", "method.num_prototypes=3",
                   "method.freeze_prototypes_niters=2", "cluster=own")
    assert swav.code == 0, swav.err
    clusters = np.load(swav.run_dir / "clusters.npz")
    assert str(clusters["kind"]) == "prototypes"
    mice = run_cli(*base, "method=mice", "method.queue_size=40", "method.feature_dim=8", "cluster=own")
    assert mice.code == 0, mice.err
    assert str(np.load(mice.run_dir / "clusters.npz")["kind"]) == "posterior"


@pytest.mark.parametrize("args,words", [
    ((*MOCO, "cluster=own"), "assigns no clusters of its own"),
    ((*[a for a in MOCO if not a.startswith("method")], "method=swav", "method.num_prototypes=8", "cluster=own"), "method.num_prototypes=3"),
    (("method=kmeans", "dataset=synthetic", "cluster=gmm"), "follows a trained method"),
    ((*MOCO, "cluster=umap", "cluster.metric=manhattan"), "cluster.metric"),
    ((*MOCO, "cluster=tsne"), "cluster=tsne is not a known option"),
    ((*MOCO, "cluster=gmm", "cluster.minutes=1"), "cluster.minutes"),  # no trainer.max_minutes to take it from
    ((*MOCO, "cluster=gmm", "cluster.minutes=2", "trainer.max_minutes=1"), "cluster.minutes"),
])
def test_impossible_stages_are_one_line_errors_before_training(run_cli, args, words):
    r = run_cli(*args)
    assert r.code == 2 and words in r.err and r.err.count("\n") == 1, r.err
    assert not (r.run_dir / "checkpoint.pt").exists()


def test_recluster_needs_a_stage_and_a_finished_run(run_cli, run_recluster, tmp_path):
    code, _, err = run_recluster(str(tmp_path), "cluster=gmm")
    assert code == 2 and "model.pt not found" in err
    r = run_cli(*MOCO)
    code, _, err = run_recluster(str(r.run_dir), "method=kmeans")
    assert code == 2 and "cluster=STAGE" in err


def test_umap_places_a_training_image_exactly_and_a_new_one_among_its_neighbours():
    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    embedding = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 10.0], [12.0, 10.0]], np.float32)
    state = {"train_features": train.numpy(), "train_embedding": embedding, "n_neighbors": np.asarray(2), "metric": np.asarray("euclidean")}
    placed = place(state, torch.cat([train, torch.tensor([[0.95, 0.05], [0.05, 0.95]])]))
    assert np.array_equal(placed[:4], embedding)  # each training point: its own coordinates
    assert placed[4].tolist() == [1.0, 0.0] and placed[5].tolist() == [11.0, 10.0]  # the mean of its 2 nearest


def test_the_budget_covers_the_stage(run_cli, clock_budgets):
    """cluster.minutes is taken from trainer.max_minutes: training gets the rest."""
    r = run_cli(*MOCO, "cluster=gmm", "cluster.pca_dim=8", "cluster.minutes=0.5", "trainer.max_minutes=2")
    assert r.code == 0, r.err
    assert clock_budgets == [90.0] and r.metrics()["cluster"]["minutes"] == 0.5


def test_runs_of_different_stages_get_their_own_rows_and_no_published_numbers(tmp_path):
    from fabricate import fabricate_run

    from clusterbench.report.runs import load_runs
    from clusterbench.report.table import aggregate, load_references

    fabricate_run(tmp_path / "a", "moco", "cifar10", 0, {"nmi": 0.5, "acc": 0.6, "ari": 0.4})
    fabricate_run(tmp_path / "b", "moco", "cifar10", 0, {"nmi": 0.7, "acc": 0.8, "ari": 0.6}, overrides=["cluster=umap"])
    fabricate_run(tmp_path / "c", "moco", "cifar10", 1, {"nmi": 0.7, "acc": 0.8, "ari": 0.6}, overrides=["cluster=umap", "cluster.n_epochs=100"])
    report = aggregate(load_runs([tmp_path]), references=load_references())
    assert set(report.cells) == {("moco", "cifar10"), ("moco (cluster=umap)", "cifar10"), ("moco (cluster.n_epochs=100,cluster=umap)", "cifar10")}
    assert all(c.n == 1 for c in report.cells.values())
    assert ("moco", "cifar10") in report.published  # the paper's own read-out (k-means) meets the paper's row ...
    assert ("moco (cluster=umap)", "cifar10") not in report.published  # ... another stage does not
