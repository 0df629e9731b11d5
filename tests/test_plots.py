"""Plots: every function writes a readable PNG atomically; the embedding map stays cheap."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from clusterbench.metrics import evaluate, matched_confusion
from clusterbench.report import plots as P

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path, min_side: int = 100) -> np.ndarray:
    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert image.shape[0] >= min_side and image.shape[1] >= min_side
    assert image.shape[0] <= 2000 and image.shape[1] <= 2000  # "modest" sizes
    return image


def blobs(n: int, dims: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    centres = rng.normal(scale=6.0, size=(classes, dims))
    return centres[labels] + rng.normal(size=(n, dims)), labels


@pytest.fixture
def spy_map(monkeypatch):
    """Replace the 2-D mapping step with a cheap fake that records what it was given."""
    calls: list[np.ndarray] = []

    def fake(x, *, method, seed):
        calls.append(np.array(x))
        return np.asarray(x)[:, :2], "fake map"

    monkeypatch.setattr(P, "_map_2d", fake)
    return calls


# -- embedding --------------------------------------------------------------------------------


def test_embedding_subsamples_before_the_map(tmp_path, spy_map):
    x, y = blobs(3000, 64, 10)
    pred = (y + 1) % 10
    out = P.plot_embedding(x, pred, y, tmp_path / "emb.png", max_points=300, seed=3)
    assert out == tmp_path / "emb.png"
    assert_png(out)
    assert len(spy_map) == 1
    assert spy_map[0].shape == (300, 50)  # subsampled first, then PCA'd to 50 dims


def test_embedding_keeps_narrow_inputs_without_pca(tmp_path, spy_map):
    x, y = blobs(200, 12, 3)
    P.plot_embedding(x, y, y, tmp_path / "emb.png", max_points=1000)
    assert spy_map[0].shape == (200, 12)


def test_subsample_is_stratified_seeded_and_unique():
    labels = np.repeat([7, 1, 4], [2000, 900, 100])
    idx = P._subsample(labels, 300, seed=0)
    assert len(idx) == 300 and len(np.unique(idx)) == 300
    counts = {c: int((labels[idx] == c).sum()) for c in (7, 1, 4)}
    assert abs(counts[7] - 200) <= 1 and abs(counts[1] - 90) <= 1 and abs(counts[4] - 10) <= 1
    assert np.array_equal(idx, P._subsample(labels, 300, seed=0))
    assert not np.array_equal(idx, P._subsample(labels, 300, seed=1))
    assert sorted(P._subsample(labels[:50], 300, seed=0)) == list(range(50))  # small: all of them


def test_embedding_runs_a_real_tsne(tmp_path):
    x, y = blobs(60, 8, 3)
    assert_png(P.plot_embedding(x, y, y, tmp_path / "emb.png", seed=1))


def test_embedding_without_labels_is_one_map_of_the_clusters(tmp_path, spy_map):
    x, y = blobs(3000, 64, 4)
    image = assert_png(P.plot_embedding(x, y, None, tmp_path / "emb.png", max_points=300, seed=0))
    two = assert_png(P.plot_embedding(x, y, y, tmp_path / "emb2.png", max_points=300, seed=0))
    assert image.shape[1] < 0.7 * two.shape[1]  # one panel, not two
    assert spy_map[0].shape == (300, 50)  # subsampled and reduced as with labels


def test_embedding_2d_is_drawn_as_is(tmp_path, monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("2-D embeddings must not be mapped again")

    monkeypatch.setattr(P, "_map_2d", must_not_run)
    monkeypatch.setattr(P, "_pca", must_not_run)
    x, y = blobs(500, 2, 4)
    assert_png(P.plot_embedding(x, y % 2, y, tmp_path / "emb.png", max_points=100))


def test_embedding_many_clusters_and_negative_ids(tmp_path, spy_map):
    x, y = blobs(400, 5, 30)
    pred = y - 1  # -1 as a "noise" cluster id, 30 colours (beyond the qualitative tables)
    assert_png(P.plot_embedding(x, pred, y, tmp_path / "emb.png"))


@pytest.mark.parametrize(
    "kwargs, message",
    [({"method": "isomap"}, "method"), ({"max_points": 0}, "max_points")],
)
def test_embedding_rejects_bad_options(tmp_path, kwargs, message):
    x, y = blobs(20, 4, 2)
    with pytest.raises(ValueError, match=message):
        P.plot_embedding(x, y, y, tmp_path / "emb.png", **kwargs)


def test_embedding_rejects_mismatched_lengths(tmp_path):
    x, y = blobs(20, 4, 2)
    with pytest.raises(ValueError, match="assignments"):
        P.plot_embedding(x, y[:-1], y, tmp_path / "emb.png")
    assert not list(tmp_path.iterdir())


# -- confusion --------------------------------------------------------------------------------


def test_confusion_more_clusters_than_classes(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    pred = np.where(rng.random(300) < 0.3, rng.integers(3, 6, 300), (y * 2 + 10))  # ids 10,12,14 + 3..5
    c = matched_confusion(y, pred)  # the table plot_confusion draws
    table, classes, clusters = c.table, c.classes, c.clusters
    assert table.shape == (3, 6)
    assert list(clusters[:3]) == [10, 12, 14]  # matched clusters on the diagonal
    assert np.trace(table) / table.sum() == pytest.approx(evaluate(y, pred)["acc"])
    out = P.plot_confusion(y, pred, tmp_path / "confusion.png", class_names=["cat", "dog", "owl"])
    assert_png(out)


def test_confusion_fewer_clusters_than_classes_keeps_matches_on_the_diagonal(tmp_path):
    y = np.array([0] * 10 + [1] * 3 + [2] * 10)
    pred = np.array([5] * 13 + [7] * 10)
    c = matched_confusion(y, pred)  # the table plot_confusion draws
    table, classes, clusters = c.table, c.classes, c.clusters
    assert list(classes) == [0, 2, 1]  # the unmatched class moves after the matched ones
    assert np.trace(table[:2, :2]) / table.sum() == pytest.approx(evaluate(y, pred)["acc"])
    assert_png(P.plot_confusion(y, pred, tmp_path / "confusion.png"))


def test_confusion_large_table_without_counts(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 40, 2000)
    pred = rng.integers(0, 45, 2000)
    assert_png(P.plot_confusion(y, pred, tmp_path / "confusion.png"))


# -- training curves --------------------------------------------------------------------------


def test_training_curves_with_partial_records(tmp_path):
    history = [
        {"epoch": 0, "loss": 2.0, "lr": 0.1},
        {"epoch": 1, "loss": 1.5, "lr": 0.05},
        {"epoch": 1, "nmi": 0.40, "acc": 0.35, "ari": 0.20},
        {"epoch": 2, "loss": 1.2},
        {"loss": 1.1},  # no epoch: takes its position
        {"epoch": 3, "acc": 0.5, "nmi": None, "note": "text", "ari": float("nan")},
        "not a record",
    ]
    assert_png(P.plot_training_curves(history, tmp_path / "curves.png"))


def test_training_curves_draw_the_probes_beside_the_clustering_metrics(tmp_path, monkeypatch):
    figures = []
    save = P._save
    monkeypatch.setattr(P, "_save", lambda fig, path: (figures.append([ax.get_legend_handles_labels()[1] for ax in fig.axes]), save(fig, path))[1])
    history = [{"epoch": 1, "loss": 2.0, "acc": 0.3, "knn_acc": 0.6}, {"epoch": 2, "loss": 1.0, "acc": 0.5, "knn_acc": 0.8, "linear_acc": 0.85}]
    assert_png(P.plot_training_curves(history, tmp_path / "curves.png"))
    assert figures[0][-1] == ["ACC", "kNN", "linear"]


@pytest.mark.parametrize(
    "history",
    [[{"epoch": e, "loss": 1.0 / (e + 1)} for e in range(5)], [{"epoch": 1, "nmi": 0.3}, {"epoch": 2, "acc": 0.4}]],
    ids=["loss-only", "metrics-only"],
)
def test_training_curves_with_one_panel_empty(tmp_path, history):
    assert_png(P.plot_training_curves(history, tmp_path / "curves.png"))


@pytest.mark.parametrize("history", [[], [{"epoch": 1}], [{"epoch": 1, "lr": 0.1, "loss": None}]])
def test_training_curves_without_usable_records(tmp_path, history):
    with pytest.raises(ValueError, match="no record"):
        P.plot_training_curves(history, tmp_path / "curves.png")
    assert not (tmp_path / "curves.png").exists()


# -- trend and bars ---------------------------------------------------------------------------


def test_trend_two_series_three_nights(tmp_path):
    points = [
        {"night": night, "series": series, "nmi": 0.6 + 0.01 * i, "acc": 0.5 + off, "ari": 0.4}
        for i, night in enumerate(["2026-11-26", "2026-11-24", "2026-11-25"])
        for series, off in (("kmeans · digits", 0.0), ("gmm · digits", 0.05))
    ]
    assert_png(P.plot_trend(points, tmp_path / "trend.png"))
    assert_png(P.plot_trend(points, tmp_path / "trend_acc.png", metrics=("acc",)))


def test_trend_without_points(tmp_path):
    with pytest.raises(ValueError):
        P.plot_trend([], tmp_path / "trend.png")


@pytest.mark.parametrize("published", [True, False])
def test_scores_bars(tmp_path, published):
    rows = [
        {"method": m, "dataset": d, "mean": 0.5 + 0.1 * i, "std": 0.02 * j,
         "published": (0.8 if published and i == 0 else None)}
        for i, m in enumerate(["kmeans", "gmm"])
        for j, d in enumerate(["mnist", "cifar10", "stl10"])
    ]
    rows.pop()  # a method missing on one dataset leaves a gap
    assert_png(P.plot_scores_bars(rows, tmp_path / "bars.png", metric="nmi"))


def test_scores_bars_without_rows(tmp_path):
    with pytest.raises(ValueError):
        P.plot_scores_bars([{"method": "kmeans", "dataset": "mnist", "mean": None, "std": 0.0}], tmp_path / "b.png")


# -- cluster montage --------------------------------------------------------------------------


def digit_like(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n grey 12×12 images in k clusters (cluster c = a bar at height c), their ids and features."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, k, n)
    images = rng.integers(0, 40, (n, 1, 12, 12), dtype=np.uint8)
    for i, c in enumerate(ids):
        images[i, 0, c % 12] = 255
    return images, ids, images.reshape(n, -1).astype(np.float32)


def test_montage_picks_nearest_first_then_distinct_random_members():
    # cluster 0: 6 points, the two at angle ~0 are nearest its centre; cluster 1: 3 points
    features = np.array([[1, 0], [1, 0.01], [1, 2], [1, -2], [1, 3], [1, -3],  # cluster 0
                         [0, 1], [0.1, 1], [-0.1, 1]], dtype=float)
    ids = np.array([0] * 6 + [5] * 3)
    picks = P.montage_picks(ids, features, per_cluster=4, nearest=2, seed=0)
    assert picks.clusters.tolist() == [0, 5] and picks.sizes.tolist() == [6, 3] and picks.n_clusters == 2
    row0, row1 = picks.members
    assert row0[:2].tolist() == [0, 1]  # the closest to the mean direction, closest first
    assert len(row0) == 4 and len(set(row0.tolist())) == 4 and set(row0[2:].tolist()) <= {2, 3, 4, 5}
    assert row1[0] == 6 and sorted(row1.tolist()) == [6, 7, 8]  # a small cluster: all of it, no repeats
    again = P.montage_picks(ids, features, per_cluster=4, nearest=2, seed=0)
    assert [m.tolist() for m in again.members] == [m.tolist() for m in picks.members]  # seeded


def test_montage_picks_largest_clusters_first_capped():
    ids = np.repeat([7, 3, 9, 1], [5, 40, 40, 1])  # 3 and 9 tie: the smaller id first
    picks = P.montage_picks(ids, np.ones((86, 2)), max_clusters=3)
    assert picks.clusters.tolist() == [3, 9, 7] and picks.sizes.tolist() == [40, 40, 5]
    assert picks.n_clusters == 4 and picks.n_images == 86
    assert all(set(ids[m].tolist()) == {c} for m, c in zip(picks.members, picks.clusters.tolist()))


def test_montage_grey_with_features(tmp_path):
    images, ids, features = digit_like(300, 6)
    out = P.plot_cluster_montage(images, ids, tmp_path / "clusters.png", features=features)
    assert out == tmp_path / "clusters.png"
    image = assert_png(out)
    assert np.allclose(image[..., 0], image[..., 1]) and np.allclose(image[..., 1], image[..., 2])  # stays grey


def test_montage_rgb_tensor_without_features_keeps_colours(tmp_path):
    import torch

    red = np.zeros((3, 16, 16), np.uint8)
    red[0] = 255
    blue = np.zeros((3, 16, 16), np.uint8)
    blue[2] = 255
    images = torch.from_numpy(np.stack([red] * 20 + [blue] * 5))
    ids = np.repeat([0, 1], [20, 5])
    image = assert_png(P.plot_cluster_montage(images, ids, tmp_path / "clusters.png"))  # pixel space
    rgb = image[..., :3]
    is_red = (rgb[..., 0] > 0.95) & (rgb[..., 1] < 0.05) & (rgb[..., 2] < 0.05)
    is_blue = (rgb[..., 2] > 0.95) & (rgb[..., 0] < 0.05) & (rgb[..., 1] < 0.05)
    assert is_red.sum() == 8 * is_blue.sum() / 5 > 0  # 8 red tiles, the blue cluster's 5, the same size
    assert np.flatnonzero(is_red.any(1)).max() < np.flatnonzero(is_blue.any(1)).min()  # larger cluster on top


def test_montage_more_clusters_than_rows_and_single_image_clusters(tmp_path):
    images, ids, features = digit_like(400, 12)
    ids = ids * 10  # sparse ids
    ids[:30] = np.arange(1000, 1030)  # 30 clusters of one image each
    few = assert_png(P.plot_cluster_montage(images, ids, tmp_path / "few.png", features=features, max_clusters=5), min_side=50)
    many = P.plot_cluster_montage(images, ids, tmp_path / "many.png", features=features, max_clusters=40)
    from matplotlib.image import imread

    assert imread(many).shape[0] > 3 * few.shape[0]  # one row per cluster, up to the cap
    assert_png(P.plot_cluster_montage(images[:3], np.arange(3), tmp_path / "three.png", per_cluster=8, nearest=4), min_side=50)


@pytest.mark.parametrize("nearest, per_cluster", [(0, 5), (6, 6), (9, 3)])
def test_montage_only_nearest_or_only_random(tmp_path, nearest, per_cluster):
    images, ids, features = digit_like(60, 3)
    assert_png(P.plot_cluster_montage(images[:, 0], ids, tmp_path / "m.png", features=features, nearest=nearest,
                                      per_cluster=per_cluster, title="my folder"), min_side=50)


def test_montage_rejects_mismatches(tmp_path):
    images, ids, features = digit_like(20, 2)
    with pytest.raises(ValueError, match="assignments"):
        P.plot_cluster_montage(images, ids[:-1], tmp_path / "m.png")
    with pytest.raises(ValueError, match="feature rows"):
        P.plot_cluster_montage(images, ids, tmp_path / "m.png", features=features[:-1])
    with pytest.raises(ValueError, match="per_cluster"):
        P.plot_cluster_montage(images, ids, tmp_path / "m.png", per_cluster=0)
    assert not list(tmp_path.iterdir())


# -- files ------------------------------------------------------------------------------------


def test_png_data_uri(tmp_path):
    path = P.plot_training_curves([{"epoch": 1, "loss": 1.0}], tmp_path / "curves.png")
    uri = P.png_data_uri(path)
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1]) == path.read_bytes()
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError):
        P.png_data_uri(tmp_path / "notes.txt")


def test_no_temp_files_and_no_pyplot_figures(tmp_path, spy_map):
    import matplotlib.pyplot as plt

    open_before = plt.get_fignums()
    x, y = blobs(200, 6, 3)
    out = tmp_path / "nested" / "run"
    P.plot_embedding(x, y, y, out / "embedding.png")
    P.plot_embedding(x, y, y, out / "embedding.png")  # overwriting replaces in place
    P.plot_confusion(y, y, out / "confusion.png")
    P.plot_training_curves([{"epoch": 1, "loss": 1.0, "acc": 0.5}], out / "curves.png")
    P.plot_trend([{"night": "2026-11-24", "series": "a · b", "nmi": 0.5, "acc": 0.5, "ari": 0.5}], out / "trend.png")
    P.plot_scores_bars([{"method": "a", "dataset": "b", "mean": 0.5, "std": 0.0, "published": None}], out / "bars.png")
    P.plot_cluster_montage(np.zeros((200, 1, 8, 8), np.uint8), y, out / "clusters.png", features=x)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["bars.png", "clusters.png", "confusion.png", "curves.png", "embedding.png", "trend.png"]
    assert plt.get_fignums() == open_before


def test_embedding_clusters_wear_their_matched_class_colour():
    y = np.array([0, 0, 1, 1, 2, 2, 2])
    pred = np.array([7, 7, 3, 3, 9, 9, 5])  # 7→0, 3→1, 9→2; cluster 5 is left unmatched
    class_colour, cluster_colour, n = P._matched_colours(y, pred)
    assert [cluster_colour[c] for c in (7, 3, 9)] == [class_colour[0], class_colour[1], class_colour[2]]
    assert cluster_colour[5] == 3 and n == 4  # a colour of its own, after the classes'


def test_the_auto_map_keeps_quick_runs_cheap_and_says_which_it_drew(tmp_path):
    how, why = P.choose_embedding_map("auto", 1000, run_seconds=0.3)  # a k-means run on digits
    assert how == "pca" and "plots.embedding_map=tsne" in why and "0.3 s run" in why
    how, why = P.choose_embedding_map("auto", 1000, run_seconds=60.0)  # ≈ 2.5 s of t-SNE is 4% of it
    assert how == "tsne" and why.startswith("t-SNE")
    assert P.choose_embedding_map("tsne", 1000, run_seconds=0.1)[0] == "tsne"  # asked for: drawn whatever it costs
    x = np.random.default_rng(0).normal(size=(200, 16))
    y = np.repeat(np.arange(4), 50)
    path = P.plot_embedding(x, y, y, tmp_path / "pca.png", method="pca")
    assert_png(path)
