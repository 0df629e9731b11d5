"""PNG plots for runs and reports: embedding maps, confusion tables, training curves, trends, bars,
and a montage of each cluster's images (the one plot that needs no labels).

Figures are built as bare ``matplotlib.figure.Figure`` objects on an Agg canvas and never go
through ``pyplot``: nothing is registered in pyplot's global figure list, so no state leaks
between calls or threads, the process-wide backend is left alone (a user's interactive session
keeps its own), and a figure is freed as soon as it goes out of scope. Every PNG is rendered to
memory and written with ``atomic_write_bytes``, so a reader never sees a half-written image.

Scores follow the package convention (``clusterbench.metrics``): fractions in [0, 1]. They are
drawn in percent, as the papers print them.
"""

from __future__ import annotations

import base64
import io
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Colormap, ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from clusterbench.io import PathLike, atomic_write_bytes
from clusterbench.metrics import contingency, hungarian_match, matched_confusion

__all__ = [
    "plot_embedding",
    "plot_confusion",
    "plot_training_curves",
    "plot_trend",
    "plot_scores_bars",
    "plot_grid_heatmap",
    "plot_cluster_montage",
    "png_data_uri",
]

DPI = 100  # with the modest figure sizes below this keeps each PNG in the tens of kB
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PCA_DIMS = 50  # t-SNE on >50-D inputs is slow and noisy; 50 PCA components is the usual step
EMBEDDING_MAPS = ("tsne", "umap", "pca")
# scikit-learn's t-SNE (500 iterations, one thread) on this project's 2-core CI machine:
# ≈ 2.3 s per 1,000 points (digits). The auto map uses it to keep the plots a small share of a run.
TSNE_SECONDS_PER_POINT = 2.5e-3
PLOT_SHARE = 0.1  # auto: t-SNE only when it costs at most this share of the run's wall time


def choose_embedding_map(requested: str, points: int, run_seconds: float) -> tuple[str, str]:
    """``plots.embedding_map``: the map to draw and why. ``auto`` draws t-SNE when its expected
    cost fits in ``PLOT_SHARE`` of the run (its wall time so far plus the map), else PCA."""
    if requested != "auto":
        return requested, f"{requested} (plots.embedding_map)"
    cost = TSNE_SECONDS_PER_POINT * points
    if cost <= PLOT_SHARE * (run_seconds + cost):
        return "tsne", f"t-SNE (≈ {cost:.1f} s for {points} points, within {PLOT_SHARE:.0%} of the run)"
    return "pca", (f"PCA: a t-SNE of {points} points (≈ {cost:.1f} s) would be over {PLOT_SHARE:.0%} of this {run_seconds:.1f} s run; "
                   "plots.embedding_map=tsne draws it")


MIN_TSNE_POINTS = 10  # below this a neighbourhood map says nothing; fall back to PCA
METRIC_NAMES = {"nmi": "NMI", "acc": "ACC", "ari": "ARI", "purity": "purity"}
# the probes' accuracies (eval.knn, eval.linear), drawn dashed beside the clustering metrics
PROBE_NAMES = {"knn_acc": "kNN", "linear_acc": "linear"}


# --------------------------------------------------------------------------------------------
# shared helpers


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)  # attach explicitly: a bare Figure must not pick the global backend
    return fig


def _save(fig: Figure, path: PathLike) -> Path:
    path = Path(path)
    buf = io.BytesIO()
    try:
        # no "Software" text chunk: identical inputs then give byte-identical files
        fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    finally:
        fig.clear()  # drop artists now rather than whenever the cycle collector runs
    atomic_write_bytes(path, buf.getvalue())
    return path


def _number(value: Any) -> Optional[float]:
    """A finite float, or None for missing, non-numeric, boolean or NaN/inf values."""
    if value is None or isinstance(value, (bool, np.bool_)):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _category_colours(k: int) -> Colormap:
    """k distinguishable colours: the qualitative tables while they last, then a rainbow."""
    if k <= 10:
        return ListedColormap(colormaps["tab10"].colors[: max(k, 1)])
    if k <= 20:
        return ListedColormap(colormaps["tab20"].colors[:k])
    return colormaps["turbo"].resampled(k)


def _tick_step(n: int, most: int = 40) -> int:
    return max(1, math.ceil(n / most))


# --------------------------------------------------------------------------------------------
# embedding map


def _subsample(labels: np.ndarray, max_points: int, seed: int) -> np.ndarray:
    """Indices of at most ``max_points`` samples, class-stratified, in a shuffled order.

    Each class gets a share proportional to its size (±1): within a class the samples take
    random ranks r, their key (r + u) / n_class spreads them evenly over [0, 1), and the
    ``max_points`` smallest keys overall are kept. The returned order interleaves the classes,
    so when drawn no class paints over all the others.
    """
    n = len(labels)
    rng = np.random.default_rng(seed)
    if n <= max_points:
        return rng.permutation(n)
    _, inv, counts = np.unique(labels, return_inverse=True, return_counts=True)
    inv = inv.ravel()
    perm = rng.permutation(n)
    grouped = perm[np.argsort(inv[perm], kind="stable")]  # by class, random within each class
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(n, dtype=np.float64)
    rank[grouped] = np.arange(n) - np.repeat(starts, counts)
    key = (rank + rng.random(n)) / counts[inv]
    return np.argsort(key, kind="stable")[:max_points]


def _pca(x: np.ndarray, dims: int, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    if x.shape[0] < 2:  # a single point has no directions of variance to find
        return x[:, :dims]
    dims = min(dims, x.shape[0], x.shape[1])
    return PCA(n_components=dims, random_state=seed).fit_transform(x)


def _map_2d(x: np.ndarray, *, method: str, seed: int) -> tuple[np.ndarray, str]:
    """The 2-D map of (already subsampled, at most 50-D) points and the algorithm's name.

    Kept separate so its input size is the one thing to watch: its cost grows fast with N.
    """
    n = x.shape[0]
    if n < MIN_TSNE_POINTS:
        xy = _pca(x, 2, seed)
        return np.pad(xy, ((0, 0), (0, 2 - xy.shape[1]))), "PCA"
    # scikit-learn requires perplexity < N; 30 is the usual value, N/3 keeps small maps sane
    perplexity = float(min(30.0, max(2.0, (n - 1) / 3.0)))
    if method == "umap":
        try:
            import umap  # type: ignore[import-not-found]
        except ImportError:
            pass
        else:
            reducer = umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), random_state=seed)
            return np.asarray(reducer.fit_transform(x), dtype=np.float64), "UMAP"
    try:
        from openTSNE import TSNE as OpenTSNE  # type: ignore[import-not-found]
    except ImportError:
        pass
    else:
        emb = OpenTSNE(n_components=2, perplexity=perplexity, random_state=seed).fit(x)
        return np.asarray(emb, dtype=np.float64), "t-SNE (openTSNE)"
    import inspect

    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    # 500 iterations (250 exaggerated + 250 free) give the same picture as the default 1000 on
    # ~1000 points (KL 0.58 vs 0.56 on digits, identical kNN accuracy) at half the cost.
    iters = "max_iter" if "max_iter" in inspect.signature(TSNE).parameters else "n_iter"  # renamed in 1.5
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, **{iters: 500})
    # One thread: Barnes-Hut's OpenMP loop is short per iteration, and on a busy machine (a
    # parallel sweep, a shared CI box) spinning threads made it 3-4x slower than one thread.
    with threadpool_limits(limits=1):
        xy = tsne.fit_transform(x)
    return np.asarray(xy, dtype=np.float64), "t-SNE (scikit-learn)"


def _matched_colours(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[dict[Any, int], dict[Any, int], int]:
    """Colour indices for classes and clusters such that each cluster wears the colour of
    the class it is matched to (Hungarian), so the two panels can be compared at a glance.
    Unmatched clusters get colours of their own after the classes'."""
    classes = np.unique(y_true)
    class_colour = {c: i for i, c in enumerate(classes.tolist())}
    match = hungarian_match(contingency(y_true, y_pred))  # cluster id → class id
    cluster_colour: dict[Any, int] = {}
    spare = len(classes)
    for cl in np.unique(y_pred).tolist():
        if cl in match:
            cluster_colour[cl] = class_colour[match[cl]]
        else:
            cluster_colour[cl], spare = spare, spare + 1
    return class_colour, cluster_colour, spare


def _scatter_panel(ax: Any, xy: np.ndarray, values: np.ndarray, title: str,
                   legend_title: str, size: float, colour_of: Mapping[Any, int], n_colours: int) -> None:
    ids = np.unique(values)
    k = len(ids)
    cmap = _category_colours(n_colours)
    ax.scatter(xy[:, 0], xy[:, 1], c=[colour_of[v] for v in values.tolist()], cmap=cmap, vmin=-0.5,
               vmax=n_colours - 0.5, s=size, linewidths=0, alpha=0.85, rasterized=True)
    ax.set_title(f"{title} ({k})", fontsize=10)
    if k <= 10:  # beyond ten entries a legend hides the map it explains
        handles = [Line2D([], [], linestyle="", marker="o", markersize=5, color=cmap(colour_of[v]), label=str(v))
                   for v in ids.tolist()]
        ax.legend(handles=handles, title=legend_title, fontsize=7, title_fontsize=7,
                  loc="best", framealpha=0.7, borderpad=0.3, handletextpad=0.2)


def plot_embedding(
    embeddings: np.ndarray,
    assignments: np.ndarray,
    labels: Optional[np.ndarray],
    path: PathLike,
    *,
    max_points: int = 2000,
    seed: int = 0,
    method: str = "tsne",
) -> Path:
    """Two side-by-side 2-D maps of the embeddings: coloured by predicted cluster and by label;
    without labels (``labels=None``) the one map coloured by cluster.

    The points are subsampled (class-stratified, seeded) to ``max_points`` before anything
    else, reduced to 50 dimensions with PCA when wider, then mapped with openTSNE if installed,
    UMAP when ``method="umap"`` and ``umap`` is installed, else scikit-learn's t-SNE;
    ``method="pca"`` draws the first two principal components instead (milliseconds, for quick
    runs). 2-D embeddings are drawn as they are.
    """
    method = method.lower()
    if method not in EMBEDDING_MAPS:
        raise ValueError(f"method must be one of {', '.join(EMBEDDING_MAPS)}, got {method!r}")
    if max_points < 1:
        raise ValueError(f"max_points must be at least 1, got {max_points}")
    x = np.asarray(embeddings.detach().cpu() if hasattr(embeddings, "detach") else embeddings)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"embeddings must be N×D, got shape {x.shape}")
    y_pred = np.asarray(assignments).ravel()
    has_labels = labels is not None
    y_true = np.asarray(labels).ravel() if has_labels else y_pred  # unlabelled: subsample stratified by cluster
    n, d = x.shape
    if n == 0:
        raise ValueError("no embeddings to plot")
    if not (len(y_pred) == len(y_true) == n):
        raise ValueError(f"{n} embeddings but {len(y_pred)} assignments and {len(y_true)} labels")

    if has_labels:
        class_colour, cluster_colour, n_colours = _matched_colours(y_true, y_pred)  # on all points
    else:
        cluster_colour = {c: i for i, c in enumerate(np.unique(y_pred).tolist())}
        n_colours = len(cluster_colour)
    keep = _subsample(y_true, max_points, seed)
    x, y_pred, y_true = np.asarray(x[keep], dtype=np.float64), y_pred[keep], y_true[keep]
    if not np.isfinite(x).all():
        raise ValueError("embeddings contain NaN or inf")
    shown = len(keep)
    if d <= 2:
        xy = np.pad(x, ((0, 0), (0, 2 - d)))
        algo = "embedding (2-D, as is)" if d == 2 else "embedding (1-D, as is)"
    elif method == "pca":  # the cheap map: linear, milliseconds
        xy = _pca(x, 2, seed)
        xy, algo = np.pad(xy, ((0, 0), (0, 2 - xy.shape[1]))), "PCA"
    else:
        if d > PCA_DIMS:
            x = _pca(x, PCA_DIMS, seed)
        xy, algo = _map_2d(x, method=method, seed=seed)
        if d > PCA_DIMS:
            algo += f" after PCA {d}→{x.shape[1]}"

    fig = _new_figure(10.0 if has_labels else 5.6, 4.8)
    axes = np.atleast_1d(fig.subplots(1, 2 if has_labels else 1))
    size = float(np.clip(4000.0 / shown, 2.0, 20.0))  # dense maps need small dots
    if has_labels:
        _scatter_panel(axes[0], xy, y_pred, "clusters, in matched class colours", "cluster", size, cluster_colour, n_colours)
        _scatter_panel(axes[1], xy, y_true, "true labels", "label", size, class_colour, n_colours)
    else:
        _scatter_panel(axes[0], xy, y_pred, "clusters (no labels)", "cluster", size, cluster_colour, n_colours)
    for ax in axes:
        if d > 2:  # map coordinates carry no units; ticks would only suggest they do
            ax.set_xticks([])
            ax.set_yticks([])
        ax.set_aspect("equal", adjustable="datalim")
    points = f"{shown} points" if shown == n else f"{shown} of {n} points"
    fig.suptitle(f"{algo} · {points}", fontsize=11)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# confusion table


def plot_confusion(
    y_true: object,
    y_pred: object,
    path: PathLike,
    *,
    class_names: Optional[list[str]] = None,
) -> Path:
    """Classes × clusters counts, matched clusters on the diagonal and extra clusters after.

    Colour is the row-normalised fraction (how each true class spreads over the clusters),
    so small classes are as visible as large ones; counts are printed up to 20 × 20.
    """
    c = matched_confusion(y_true, y_pred)
    table, classes, clusters = c.table, c.classes, c.clusters
    n_rows, n_cols = table.shape
    total = table.sum()
    matched = min(n_rows, n_cols)
    acc = float(np.trace(table[:matched, :matched]) / total)
    frac = table / np.maximum(table.sum(axis=1, keepdims=True), 1)

    def class_label(cls: Any) -> str:
        i = int(cls)
        if class_names is not None and 0 <= i < len(class_names):
            return str(class_names[i])
        return str(cls)

    width = float(np.clip(2.5 + 0.45 * n_cols, 5.0, 14.0))
    height = float(np.clip(1.5 + 0.4 * n_rows, 4.0, 12.0))
    fig = _new_figure(width, height)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, label="fraction of the true class")
    if n_rows <= 20 and n_cols <= 20:
        size = 8 if max(n_rows, n_cols) <= 10 else 7
        for r in range(n_rows):
            for j in range(n_cols):
                if table[r, j]:
                    ax.text(j, r, str(table[r, j]), ha="center", va="center", fontsize=size,
                            color="white" if frac[r, j] > 0.5 else "black")
    if n_cols > n_rows:  # mark where the clusters left without a class begin
        ax.axvline(matched - 0.5, color="tab:red", linewidth=1.0, linestyle="--")
    col_ticks = np.arange(0, n_cols, _tick_step(n_cols))
    row_ticks = np.arange(0, n_rows, _tick_step(n_rows))
    ax.set_xticks(col_ticks, [str(clusters[j]) for j in col_ticks], fontsize=7,
                  rotation=90 if n_cols > 20 else 0)
    ax.set_yticks(row_ticks, [class_label(classes[r]) for r in row_ticks], fontsize=7)
    ax.set_xlabel("cluster (matched)")
    ax.set_ylabel("true class")
    ax.set_title(f"{n_rows} classes × {n_cols} clusters · ACC {acc:.1%} on the diagonal", fontsize=10)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# training curves


def plot_training_curves(history: Sequence[Mapping[str, Any]], path: PathLike) -> Path:
    """Loss (and learning rate, when logged) vs epoch on the left, NMI/ACC/ARI in % on the right
    (with the kNN / linear probes' accuracies, dashed, when they ran).

    Records may hold any subset of epoch, loss, lr, nmi, acc, ari; a record without an
    epoch takes its 1-based position. A run in steps (a training stage such as SCAN tags its
    records with ``stage``) gets one loss panel per step, as their losses share no scale, and
    its metrics along one axis of epochs, each step after the one before, with the steps
    marked. Raises ValueError when no record has a loss or a metric.
    """
    steps: dict[str, dict[str, list[tuple[float, float]]]] = {}  # step → series, in the run's order
    offset, last = 0.0, 0.0
    for i, rec in enumerate(history):
        if not isinstance(rec, Mapping):
            continue
        step = str(rec.get("stage") or "training")
        if step not in steps:
            offset = last  # this step's epochs follow the previous step's
            steps[step] = defaultdict(list)
        epoch = _number(rec.get("epoch"))
        x = offset + (epoch if epoch is not None else float(i + 1))
        last = max(last, x)
        for key in ("loss", "lr", "nmi", "acc", "ari", *PROBE_NAMES):
            v = _number(rec.get(key))
            if v is not None:
                steps[step][key].append((x, v))
    if not steps:
        steps["training"] = defaultdict(list)
    metric_keys = [k for k in ("nmi", "acc", "ari", *PROBE_NAMES) if any(series[k] for series in steps.values())]
    if not any(series["loss"] for series in steps.values()) and not metric_keys:
        raise ValueError("training history has no record with a loss or a metric (nmi, acc, ari)")

    fig = _new_figure(10.0 if len(steps) == 1 else 4.0 + 3.5 * len(steps), 4.0)
    *loss_axes, ax_metric = fig.subplots(1, len(steps) + 1)
    for ax_loss, (step, series) in zip(loss_axes, steps.items()):
        if series["loss"]:
            xs, ys = zip(*sorted(series["loss"]))
            ax_loss.plot(xs, ys, color="tab:blue", marker="." if len(xs) <= 50 else None, label="loss")
            ax_loss.set_ylabel("loss")
            if series["lr"]:
                ax_lr = ax_loss.twinx()
                xs, ys = zip(*sorted(series["lr"]))
                ax_lr.plot(xs, ys, color="tab:gray", linestyle="--", linewidth=1.0, label="lr")
                ax_lr.set_ylabel("learning rate", color="tab:gray")
                ax_lr.tick_params(axis="y", labelcolor="tab:gray", labelsize=7)
                if min(ys) > 0 and max(ys) / min(ys) > 20:  # schedules spanning decades read better in log
                    ax_lr.set_yscale("log")
                elif max(ys) == min(ys) and max(ys) > 0:  # a constant rate: one clean tick, not ±5 % of noise
                    ax_lr.set_ylim(0, 2 * max(ys))
        else:
            ax_loss.text(0.5, 0.5, "no loss logged", ha="center", va="center", transform=ax_loss.transAxes)
        ax_loss.set_xlabel("epoch")
        ax_loss.set_title("training loss" if len(steps) == 1 else f"{step} loss", fontsize=10)

    for key in metric_keys:
        points = sorted(p for series in steps.values() for p in series[key])
        xs, ys = zip(*points)
        probe = key in PROBE_NAMES
        ax_metric.plot(xs, [100.0 * v for v in ys], marker="." if len(xs) <= 50 else None, label=PROBE_NAMES[key] if probe else METRIC_NAMES[key],
                       linestyle="--" if probe else "-")
    if len(steps) > 1:  # where each step begins
        for step, series in list(steps.items())[1:]:
            start = min((x for values in series.values() for x, _ in values), default=None)
            if start is not None:
                ax_metric.axvline(start - 0.5, color="tab:gray", linestyle=":", linewidth=1.0)
                ax_metric.annotate(step, (start - 0.5, 1.0), xycoords=("data", "axes fraction"), fontsize=7, ha="left", va="top", rotation=90)
    if metric_keys:
        ax_metric.legend(fontsize=8)
        ax_metric.set_ylabel("%")
    else:
        ax_metric.text(0.5, 0.5, "no metrics logged", ha="center", va="center", transform=ax_metric.transAxes)
    ax_metric.set_xlabel("epoch" if len(steps) == 1 else "epoch (steps one after another)")
    ax_metric.set_title("clustering metrics", fontsize=10)
    for ax in (*loss_axes, ax_metric):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# night-over-night trend


def plot_trend(
    points: Sequence[Mapping[str, Any]],
    path: PathLike,
    *,
    metrics: Iterable[str] = ("nmi", "acc", "ari"),
) -> Path:
    """One subplot per metric, one line per series, nights (sorted) along x, values in %.

    Nights are categories, not a time axis: a skipped night leaves no gap, and the labels are
    whatever the store calls a night. Several points for one (night, series) are averaged.
    Raises ValueError when there is nothing to draw.
    """
    metrics = list(metrics)
    if not metrics:
        raise ValueError("no metrics to plot")
    values: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for p in points:
        night, name = p.get("night"), p.get("series")
        if night is None or name is None:
            continue
        for m in metrics:
            v = _number(p.get(m))
            if v is not None:
                values[(str(name), str(night), m)].append(v)
    if not values:
        raise ValueError("no trend points with a night, a series and a metric value")
    nights = sorted({night for _, night, _ in values})
    series = sorted({name for name, _, _ in values})
    x_of = {night: i for i, night in enumerate(nights)}
    cmap = _category_colours(len(series))

    fig = _new_figure(float(np.clip(3.5 * len(metrics), 5.0, 14.0)), 3.8 + 0.18 * math.ceil(len(series) / 3))
    axes = np.atleast_1d(fig.subplots(1, len(metrics), squeeze=False)[0])
    for ax, m in zip(axes, metrics):
        for s_i, name in enumerate(series):
            pts = [(x_of[n], 100.0 * float(np.mean(values[(name, n, m)])))
                   for n in nights if (name, n, m) in values]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker="o", markersize=4, color=cmap(s_i), label=name)
        ax.set_title(METRIC_NAMES.get(m, m), fontsize=10)
        ax.set_ylabel("%")
        step = _tick_step(len(nights), most=12)
        ticks = list(range(0, len(nights), step))
        ax.set_xticks(ticks, [nights[i] for i in ticks], rotation=30, ha="right", fontsize=7)
        ax.set_xlim(-0.5, len(nights) - 0.5)
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=cmap(i), marker="o", markersize=4, label=name) for i, name in enumerate(series)]
    fig.legend(handles=handles, loc="lower center", ncol=min(3, len(series)), fontsize=8, frameon=False)
    fig.suptitle(f"night-over-night trend · {len(series)} series over {len(nights)} nights", fontsize=11)
    # leave the bottom band to the legend: one row per three series
    fig.tight_layout(rect=(0, min(0.45, 0.045 * math.ceil(len(series) / 3)), 1, 1))
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# report bars


def plot_scores_bars(rows: Sequence[Mapping[str, Any]], path: PathLike, *, metric: str = "acc") -> Path:
    """Grouped bars: datasets along x, one bar per method with its std over seeds as error
    bar, and a black diamond at the published value where the row has one. Values in %.
    """
    datasets: list[str] = []
    methods: list[str] = []
    cells: dict[tuple[str, str], tuple[float, float, Optional[float]]] = {}
    for row in rows:
        mean = _number(row.get("mean"))
        if mean is None:
            continue
        method, dataset = str(row.get("method")), str(row.get("dataset"))
        std = _number(row.get("std")) or 0.0
        cells[(method, dataset)] = (mean, std, _number(row.get("published")))
        if dataset not in datasets:
            datasets.append(dataset)
        if method not in methods:
            methods.append(method)
    if not cells:
        raise ValueError("no rows with a mean to plot")

    n_m = len(methods)
    group = 0.8  # width of a dataset's group of bars; the rest is the gap between groups
    bar = group / n_m
    cmap = _category_colours(n_m)
    fig = _new_figure(float(np.clip(2.0 + 0.35 * len(cells), 5.0, 14.0)), 4.2)
    ax = fig.add_subplot(1, 1, 1)
    any_published = False
    for m_i, method in enumerate(methods):
        offset = -group / 2 + bar * (m_i + 0.5)
        xs, means, stds, pub_x, pub_y = [], [], [], [], []
        for d_i, dataset in enumerate(datasets):
            if (method, dataset) not in cells:
                continue
            mean, std, published = cells[(method, dataset)]
            xs.append(d_i + offset)
            means.append(100.0 * mean)
            stds.append(100.0 * std)
            if published is not None:
                pub_x.append(d_i + offset)
                pub_y.append(100.0 * published)
        ax.bar(xs, means, width=bar * 0.95, yerr=stds, capsize=min(3.0, 20.0 * bar), color=cmap(m_i),
               label=method, error_kw={"elinewidth": 0.8})
        if pub_x:
            any_published = True
            ax.scatter(pub_x, pub_y, marker="D", s=22, color="black", zorder=3)
    handles, _ = ax.get_legend_handles_labels()
    if any_published:
        handles.append(Line2D([], [], linestyle="", marker="D", markersize=5, color="black", label="published"))
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_xticks(range(len(datasets)), datasets, rotation=30 if len(datasets) > 4 else 0,
                  ha="right" if len(datasets) > 4 else "center", fontsize=8)
    ax.set_xlim(-0.5, len(datasets) - 0.5)
    ax.set_ylabel(f"{METRIC_NAMES.get(metric, metric)} (%)")
    ax.set_title(f"{METRIC_NAMES.get(metric, metric)}: mean ± std over seeds"
                 + (" · ◆ published" if any_published else ""), fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    return _save(fig, path)


def plot_grid_heatmap(
    values: Sequence[Sequence[Optional[float]]],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    path: PathLike,
    *,
    row_name: str = "",
    col_name: str = "",
    title: str = "",
    reference: Optional[Sequence[Sequence[Optional[float]]]] = None,
    reference_name: str = "published",
) -> Path:
    """A two-parameter sweep as a heatmap of a score in % (None: no run), each cell
    annotated; with ``reference`` (the same shape), the published sweep on the same colour
    scale and ours − published on a diverging one beside it."""
    ours = np.array([[np.nan if v is None else float(v) for v in line] for line in values], dtype=float)
    if ours.ndim != 2 or ours.shape != (len(row_labels), len(col_labels)):
        raise ValueError(f"values must be {len(row_labels)}×{len(col_labels)}, got shape {ours.shape}")
    panels: list[tuple[str, np.ndarray, str]] = [("ours", ours, "viridis")]
    if reference is not None:
        ref = np.array([[np.nan if v is None else float(v) for v in line] for line in reference], dtype=float)
        if ref.shape != ours.shape:
            raise ValueError(f"reference must have the shape of values {ours.shape}, got {ref.shape}")
        panels += [(reference_name, ref, "viridis"), ("ours − published", ours - ref, "RdBu")]
    finite = np.concatenate([p[1][np.isfinite(p[1])] for p in panels[:2]]) if len(panels) > 1 else ours[np.isfinite(ours)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 100.0)
    hi = hi if hi > lo else lo + 1.0
    width = 1.2 + 0.75 * len(col_labels)
    fig = _new_figure(min(18.0, 0.6 + width * len(panels)), 1.4 + 0.45 * len(row_labels))
    for i, (name, data, cmap_name) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        if cmap_name == "RdBu":
            span = float(np.nanmax(np.abs(data))) if np.isfinite(data).any() else 1.0
            vmin, vmax = -(span or 1.0), span or 1.0
        else:
            vmin, vmax = lo, hi
        cmap = colormaps[cmap_name].with_extremes(bad="#eeeeee")
        ax.imshow(np.ma.masked_invalid(data), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
        for r in range(data.shape[0]):
            for c in range(data.shape[1]):
                v = data[r, c]
                if not np.isfinite(v):
                    ax.text(c, r, "–", ha="center", va="center", fontsize=8, color="#777777")
                    continue
                shade = (v - vmin) / (vmax - vmin)
                dark = shade < 0.55 if cmap_name == "viridis" else abs(shade - 0.5) > 0.3
                ax.text(c, r, f"{v:+.1f}" if cmap_name == "RdBu" else f"{v:.1f}", ha="center", va="center", fontsize=8,
                        color="white" if dark else "black")
        ax.set_xticks(range(len(col_labels)), [str(c) for c in col_labels], fontsize=8)
        ax.set_yticks(range(len(row_labels)), [str(r) for r in row_labels] if i == 0 else [""] * len(row_labels), fontsize=8)
        ax.set_xlabel(col_name, fontsize=8)
        if i == 0:
            ax.set_ylabel(row_name, fontsize=8)
        ax.set_title(name, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# cluster montage

MONTAGE_GAP = 2  # mosaic px between tiles: about screen px, as small images are enlarged first
MONTAGE_MAX_HEIGHT = 2400  # px: rows shrink to keep 50 clusters on one readable page
MONTAGE_SEAM = 215  # grey level between the tiles of a row


def _rows_of(x: Any, index: np.ndarray) -> np.ndarray:
    """``x[index]`` as NumPy, gathering on the tensor's own device first: never copies all N."""
    if hasattr(x, "detach"):
        import torch

        t = x.detach()
        if t.device.type == "cpu" and t.dtype != torch.bfloat16:  # a free view: NumPy's gather beats torch's here
            return t.numpy()[index]
        rows = t[torch.as_tensor(index, device=t.device)]
        return (rows.float() if rows.dtype == torch.bfloat16 else rows).cpu().numpy()
    return np.asarray(x[index])


def _nearest_to_centre(rows: Any, members: np.ndarray, nearest: int, block: int = 1 << 22) -> np.ndarray:
    """The ``nearest`` members closest (cosine) to their cluster's centre, closest first.

    The centre is the mean of the L2-normalised rows; members are read in chunks of about
    ``block`` values, so pixel vectors of a large cluster (13k × 27,648 for STL-10) never sit
    in memory at once (8,192 rows of raw CIFAR-10 pixels, the old fixed chunk, were 0.2 GB).
    """
    width = int(np.prod(rows.shape[1:])) if len(rows.shape) > 1 else 1
    chunk = max(1, block // max(1, width))

    def unit(idx: np.ndarray) -> np.ndarray:
        v = _rows_of(rows, idx).reshape(len(idx), -1).astype(np.float32, copy=False)  # the gather already copied
        v = v.copy() if not v.flags.writeable else v
        v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        return v

    chunks = [members[i:i + chunk] for i in range(0, len(members), chunk)]
    centre = sum(unit(c).sum(0, dtype=np.float64) for c in chunks)
    centre = centre / max(float(np.linalg.norm(centre)), 1e-12)
    sim = np.concatenate([unit(c) @ centre.astype(np.float32) for c in chunks])  # cosine similarity
    take = min(nearest, len(members))
    best = np.argpartition(-sim, take - 1)[:take]
    return members[best[np.argsort(-sim[best], kind="stable")]]


def _tile_size(h: int, w: int, rows: int) -> tuple[float, int]:
    """A mosaic's on-screen tile (48-80 px, smaller only when many rows would make the page too
    tall) and the whole-pixel enlargement of h×w images to about that size."""
    tile = max(24.0, min(float(np.clip(2 * max(h, w), 48, 80)), MONTAGE_MAX_HEIGHT / rows))
    return tile, max(1, int(tile // max(h, w)))


def _to_rgb_tiles(tiles: np.ndarray) -> np.ndarray:
    """n×C×H×W (or n×H×W) uint8 or [0, 1] floats → n×H×W×3 uint8."""
    if tiles.ndim == 3:
        tiles = tiles[:, None]
    if tiles.dtype != np.uint8:
        t = tiles.astype(np.float32)
        tiles = np.clip(t * 255.0 if t.size and t.max() <= 1.0 else t, 0, 255).round().astype(np.uint8)
    c = tiles.shape[1]
    tiles = tiles[:, :3] if c >= 3 else np.repeat(tiles[:, :1], 3, axis=1)
    return tiles.transpose(0, 2, 3, 1)


@dataclass
class MontagePicks:
    """Which images a cluster montage shows: one entry per drawn row, largest cluster first."""

    clusters: np.ndarray  # the cluster id of each row
    sizes: np.ndarray  # its number of images
    members: list[np.ndarray]  # its image indices: nearest the centre first (closest first), then random
    n_clusters: int  # clusters in all, drawn or not
    n_images: int


def montage_picks(assignments: np.ndarray, space: Any, *, per_cluster: int = 8, nearest: int = 4,
                  max_clusters: int = 50, seed: int = 0) -> MontagePicks:
    """The tiles of ``plot_cluster_montage``: for the ``max_clusters`` largest clusters, the
    ``nearest`` members closest (cosine) to the centre of their rows of ``space`` (features,
    or images as pixels), then distinct random members up to ``per_cluster``.

    One argsort groups every cluster's members, so the whole costs O(N log N) plus two passes
    over the drawn clusters' rows (centre, then distances), never a per-cluster scan of all N ids.
    """
    ids = np.asarray(assignments).ravel()
    nearest = min(nearest, per_cluster)
    clusters, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    by_cluster = np.argsort(inverse.ravel(), kind="stable")  # members grouped, cluster by cluster
    starts = np.concatenate([[0], np.cumsum(counts)])
    order = np.lexsort((clusters, -counts))[:max_clusters]  # largest first, ties by id
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    for j in order:
        members = by_cluster[starts[j]:starts[j + 1]]
        near = _nearest_to_centre(space, members, nearest) if nearest else members[:0]
        rest = np.setdiff1d(members, near, assume_unique=True)
        extra = rng.choice(rest, size=min(per_cluster - len(near), len(rest)), replace=False)
        chosen.append(np.concatenate([near, extra]).astype(np.int64))
    return MontagePicks(clusters[order], counts[order], chosen, len(clusters), len(ids))


def plot_cluster_montage(
    images: Any,
    assignments: np.ndarray,
    path: PathLike,
    *,
    features: Optional[np.ndarray] = None,
    per_cluster: int = 8,
    nearest: int = 4,
    max_clusters: int = 50,
    seed: int = 0,
    title: Optional[str] = None,
) -> Path:
    """What each cluster holds, one row per cluster: the way to judge a run without labels.

    Rows go largest cluster first, at most ``max_clusters`` of them (the title says how many
    clusters and images are left out). A row shows the ``nearest`` members closest to the
    cluster's centre — cosine distance to the mean of the L2-normalised ``features``, or of
    the flattened pixels without features — so the first tiles are the cluster's typical
    image, then random members up to ``per_cluster`` tiles, so the spread shows too; slots a
    small cluster cannot fill stay blank. ``images`` is N×C×H×W (C = 1 or 3) uint8, NumPy or
    torch, and only the drawn tiles are ever copied out of it.

    Cheap enough for every run: one argsort of the ids, two passes over the shown clusters'
    feature rows, and a single mosaic image drawn, not one axis per tile (70,000 MNIST images
    with 128-D features, 10 or 50 clusters: 0.3–0.7 s in all on 2 cores).
    """
    if per_cluster < 1 or max_clusters < 1 or nearest < 0:
        raise ValueError(f"per_cluster and max_clusters must be ≥ 1 and nearest ≥ 0, got {per_cluster}, {max_clusters}, {nearest}")
    shape = tuple(images.shape)
    if len(shape) == 3:
        shape = (shape[0], 1, *shape[1:])
    if len(shape) != 4:
        raise ValueError(f"images must be N×C×H×W, got shape {tuple(images.shape)}")
    n, _, h, w = shape
    ids = np.asarray(assignments).ravel()
    if n == 0 or len(ids) != n:
        raise ValueError(f"{n} images but {len(ids)} assignments")
    if features is not None and len(features) != n:
        raise ValueError(f"{n} images but {len(features)} feature rows")
    nearest = min(nearest, per_cluster)
    picks = montage_picks(ids, features if features is not None else images, per_cluster=per_cluster, nearest=nearest,
                          max_clusters=max_clusters, seed=seed)
    rows = len(picks.members)

    # Tiles of 48-80 px on screen, smaller only when many rows would make the page too tall.
    # Small images are enlarged by whole pixels in the mosaic itself, so the gaps between
    # tiles stay thin on screen (a 2-px gap beside an 8-px digit would be a quarter tile).
    tile, factor = _tile_size(h, w, rows)
    tiles = _to_rgb_tiles(_rows_of(images, np.concatenate(picks.members)))
    if factor > 1:
        tiles = tiles.repeat(factor, axis=1).repeat(factor, axis=2)
    th, tw = h * factor, w * factor
    gap = MONTAGE_GAP
    split = 0 < nearest < per_cluster
    split_gap = 5 * gap if split else 0  # sets the nearest apart from the random members
    mosaic = np.full((rows * (th + gap) - gap, per_cluster * (tw + gap) - gap + split_gap, 3), 255, np.uint8)
    tile_iter = iter(tiles)
    for r, picked in enumerate(picks.members):
        y0 = r * (th + gap)
        for c in range(len(picked)):
            x0 = c * (tw + gap) + (split_gap if c >= nearest else 0)
            if c and not (split and c == nearest):  # a grey seam: white images keep their edges, empty slots stay white
                mosaic[y0:y0 + th, x0 - gap:x0] = MONTAGE_SEAM
            mosaic[y0:y0 + th, x0:x0 + tw] = next(tile_iter)

    head = title or f"{n:,} images in {picks.n_clusters} clusters"
    if rows < picks.n_clusters:
        left = n - int(picks.sizes.sum())
        head += f"\nthe {rows} largest shown; {picks.n_clusters - rows} smaller ({left:,} images) left out"
    scale = tile / max(th, tw)  # display px per mosaic px: about 1 after the enlargement
    label_w = 1.9  # inches for "cluster c · n images"
    head_h = 0.42 + 0.19 * (head.count("\n") + 1)  # the title's lines above the column headers
    width, height = label_w + mosaic.shape[1] * scale / DPI, head_h + mosaic.shape[0] * scale / DPI
    fig = _new_figure(width, height)
    ax = fig.add_axes((label_w / width, 0.0, 1 - label_w / width, 1 - head_h / height))
    ax.imshow(mosaic, interpolation="nearest" if scale >= 1 else "antialiased", aspect="equal")
    ax.set_axis_off()
    font = float(np.clip(tile / 6.5, 7.0, 9.0))
    for r, (cluster, size) in enumerate(zip(picks.clusters.tolist(), picks.sizes.tolist())):
        ax.text(-4 * gap, r * (th + gap) + th / 2, f"cluster {cluster} · {size:,} image{'s' if size != 1 else ''}",
                ha="right", va="center", fontsize=font)
    space_name = "features" if features is not None else "pixels"
    if nearest:
        ax.text(nearest * (tw + gap) / 2, -2 * gap, f"nearest the centre\n(cosine, {space_name})",
                ha="center", va="bottom", fontsize=7.5, color="#444")
    if split or not nearest:
        ax.text(nearest * (tw + gap) + split_gap + (per_cluster - nearest) * (tw + gap) / 2, -2 * gap, "random members",
                ha="center", va="bottom", fontsize=7.5, color="#444")
    fig.suptitle(head, fontsize=10, y=1 - 0.06 / height, va="top")
    return _save(fig, path)


def plot_image_grid(grid: np.ndarray, path: PathLike, *, row_label: str = "row {}", title: str = "") -> Path:
    """A grid of images, ``grid`` R×n×C×H×W uint8, drawn as one mosaic with a label per row
    (``row_label.format(r)``): InfoGAN's samples, a row per categorical code and a column per
    noise draw shared down the column, as the paper's figures show them."""
    if grid.ndim != 5 or grid.dtype != np.uint8:
        raise ValueError(f"expected an R×n×C×H×W uint8 grid, got {grid.dtype} {tuple(grid.shape)}")
    rows, cols, _, h, w = grid.shape
    tile, factor = _tile_size(h, w, rows)
    tiles = _to_rgb_tiles(grid.reshape(rows * cols, *grid.shape[2:]))
    if factor > 1:
        tiles = tiles.repeat(factor, axis=1).repeat(factor, axis=2)
    th, tw, gap = h * factor, w * factor, MONTAGE_GAP
    mosaic = np.full((rows * (th + gap) - gap, cols * (tw + gap) - gap, 3), MONTAGE_SEAM, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        mosaic[r * (th + gap) : r * (th + gap) + th, c * (tw + gap) : c * (tw + gap) + tw] = t
    scale = tile / max(th, tw)
    label_w, head_h = 1.0, 0.42 + 0.19 * (title.count("\n") + 1)
    width, height = label_w + mosaic.shape[1] * scale / DPI, head_h + mosaic.shape[0] * scale / DPI
    fig = _new_figure(width, height)
    ax = fig.add_axes((label_w / width, 0.0, 1 - label_w / width, 1 - head_h / height))
    ax.imshow(mosaic, interpolation="nearest" if scale >= 1 else "antialiased", aspect="equal")
    ax.set_axis_off()
    for r in range(rows):
        ax.text(-4 * gap, r * (th + gap) + th / 2, row_label.format(r), ha="right", va="center", fontsize=float(np.clip(tile / 6.5, 7.0, 9.0)))
    fig.suptitle(title, fontsize=10, y=1 - 0.06 / height, va="top")
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# HTML embedding


def png_data_uri(path: PathLike) -> str:
    """``data:image/png;base64,...`` of a PNG file, for a self-contained HTML page."""
    data = Path(path).read_bytes()
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError(f"{path} is not a PNG file")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")
