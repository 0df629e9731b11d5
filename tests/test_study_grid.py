"""benchmarks/mnist_study_grid.py: its cells compose as runs, and its table sits beside the study's."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def grid():
    sys.path.insert(0, str(BENCHMARKS))  # the script imports its sibling _common
    try:
        spec = importlib.util.spec_from_file_location("mnist_study_grid", BENCHMARKS / "mnist_study_grid.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCHMARKS))


def args(**kw) -> argparse.Namespace:
    base = dict(minutes=1.0, limit=10000, root=Path("/data"), threads=1, queues=[32, 64], momenta=[0.99, 0.999],
                seed=0, out=None, overrides=["trainer.lr=0.03"], stage="kmeans", kmeans_too=False)
    return argparse.Namespace(**{**base, **kw})


def test_the_study_grid_is_complete(grid):
    assert set(grid.STUDY) == set(grid.MOMENTA)
    assert all(set(row) == set(grid.QUEUES) for row in grid.STUDY.values())
    assert grid.STUDY[0.99][64] == max(v for row in grid.STUDY.values() for v in row.values())


def test_a_cell_composes_with_its_queue_and_momentum(grid, compose):
    overrides = grid.cell_overrides(args(), 32, 0.999)
    cfg = compose(*overrides)
    assert (cfg.method.queue_size, cfg.method.momentum) == (32, 0.999)
    assert (cfg.trainer.max_minutes, cfg.dataset.limit, cfg.hardware.threads) == (1.0, 10000, 1)
    assert cfg.trainer.lr == 0.03 and cfg.recipe_augment == "mnist_study"  # extra overrides pass; the recipe's views
    assert cfg.trainer.batch_size == 64  # the MNIST recipe (method_dataset/moco_mnist.yaml) applies
    umap = compose(*grid.cell_overrides(args(stage="umap"), 32, 0.999))  # N2D's read-out inside each cell's budget
    assert (umap.cluster.name, umap.cluster.minutes, umap.cluster.n_epochs) == ("umap", 1.5, 50)


def test_the_table_puts_ours_beside_the_study_with_the_difference(grid):
    results = {(m, q): {"acc": 0.9, "nmi": 0.8} for m in (0.99, 0.999) for q in (32, 64)}
    results[(0.99, 64)] = {"acc": 0.95, "nmi": 0.9, "method_info": {"epochs": 7}}
    text = grid.table(args(), results)
    assert "1 min a cell, MNIST 10000 subset, 1 thread(s)" in text
    assert "| 0.99 | 90.0 / 93.27 / -3.3 | 95.0 / 96.91 / -1.9 |" in text
    assert "best cell: queue 64, momentum 0.99: 95.0%" in text and "k-means read-out" in text
    umap = {key: {**r, "cluster": {"name": "umap"}} for key, r in results.items()}
    assert "UMAP + GMM read-out" in grid.table(args(stage="umap"), umap)  # the heading names the cells' read-out
