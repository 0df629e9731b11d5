"""Runs on a user's images without labels, end to end: scored by internal indices, exported,
predicted, and given a default recipe when the dataset has none."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from clusterbench.data.synthetic import load_synthetic

MOCO = ["method=moco", "method.queue_size=64", "method.head_hidden=32", "method.feature_dim=16", "trainer.batch_size=32",
        "trainer.epochs=2", "trainer.eval_every=1", "hardware=cpu"]


@pytest.fixture
def unlabelled_npz(tmp_path):
    """96 grey 8×8 images of 3 patterns, with names and no labels."""
    data = load_synthetic(num_samples=96, num_classes=3, image_size=8)
    path = tmp_path / "mine.npz"
    names = np.array([f"img_{i:03d}.png" for i in range(96)])
    np.savez(path, images=data.images[:, 0].numpy(), names=names)  # N×H×W
    return path


@pytest.mark.parametrize("method", [["method=kmeans", "method.restarts=2"], MOCO], ids=["kmeans", "moco"])
def test_an_unlabelled_run_reports_internal_scores_and_exports(run_cli, run_predict, unlabelled_npz, method, tmp_path):
    r = run_cli(*method, "dataset=array", f"dataset.path={unlabelled_npz}", "method.num_clusters=3", plots=True)
    assert r.code == 0, r.err
    m = r.metrics()
    assert m["labels"] is False and m["n_classes"] is None
    assert not {"nmi", "acc", "ari", "purity"} & set(m)
    assert -1.0 <= m["silhouette"] <= 1.0 and m["calinski_harabasz"] > 0 and m["davies_bouldin"] > 0
    assert sum(m["cluster_sizes"]) == 96 and len(m["cluster_sizes"]) == 3 and 1.0 <= m["effective_clusters"] <= 3.0
    # the console table shows the internal scores, never an NMI of 0 or a purity of 100 %
    assert "silhouette" in r.out and "NMI" not in r.out and "100.00%" not in r.out
    assert (r.run_dir / "clusters.png").is_file() and not (r.run_dir / "confusion.png").exists()
    with open(r.run_dir / "assignments.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[5]["name"] == "img_005.png" and all(row["label"] == "" for row in rows)
    if "method=moco" in method:
        history = r.history()
        assert all("nmi" not in rec and "acc" not in rec for rec in history)  # evaluations during training have nothing to score
        assert m["recipe"]["augment"].startswith("mnist") and m["recipe"]["backbone"].startswith("strided")
        assert "no recipe for array" in r.out + r.err
    code, _, err = run_predict(str(r.run_dir), "--out", str(tmp_path / "pred"))
    assert code == 0, err
    assert not (tmp_path / "pred" / "metrics.json").exists()  # nothing to score without labels
    with open(tmp_path / "pred" / "assignments.csv", newline="") as f:
        assert [row["cluster"] for row in csv.DictReader(f)] == [row["cluster"] for row in rows]


def test_an_unlabelled_run_needs_the_number_of_clusters(run_cli, unlabelled_npz):
    r = run_cli("method=kmeans", "dataset=array", f"dataset.path={unlabelled_npz}")
    assert r.code == 2 and "method.num_clusters" in r.err and "no labels" in r.err and r.err.count("\n") == 1


def test_colour_images_without_a_recipe_get_mocov2_without_blur(run_cli, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(64):
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    r = run_cli(*MOCO, "dataset=folder", f"dataset.root={folder}", "method.num_clusters=2", "trainer.epochs=1", "backbone.widths=[8,16]")
    assert r.code == 0, r.err
    m = r.metrics()
    assert m["recipe"]["augment"] == "mocov2 without blur (colour images of 12 px ≤ 64)"
    assert m["labels"] is False and m["n_samples"] == 64
    model = torch.load(r.run_dir / "model.pt", weights_only=True)
    assert model["config"]["augment"]["blur"] == 0.0 and model["config"]["augment"]["hue"] == pytest.approx(0.1)
    assert json.loads(json.dumps(model["config"]))["dataset"]["name"] == "folder"


def test_a_chosen_backbone_or_augmentation_wins_over_the_default_recipe(run_cli, unlabelled_npz):
    r = run_cli(*MOCO, "dataset=array", f"dataset.path={unlabelled_npz}", "method.num_clusters=3", "augment=none", "trainer.epochs=1",
                "backbone=convnet", "backbone.channels=[4,8]", "backbone.hidden=16")
    assert r.code == 0, r.err
    assert r.metrics()["recipe"] is None
