"""The MNIST study's MoCo grid: queue size × key-encoder momentum on MNIST, beside the study's ACC.

Each cell is one run of MoCo's MNIST recipe (conf/method_dataset/moco_mnist.yaml; k-means
read-out, or `--stage umap`: N2D's UMAP + GMM inside the cell's budget, as experiment=mnist_5min) with `method.queue_size=Q method.momentum=M` under `trainer.max_minutes=--minutes`,
the same as `clusterbench -m method=moco dataset=mnist method.queue_size=16,32,64,128,256
method.momentum=0.9,0.99,0.999,0.9999`, one cell at a time. Prints our ACC per cell beside the
study's (5 minutes on a GPU; clustering ACC or a probe not stated) and the difference, rows =
momentum, columns = queue, as Markdown; with `--kmeans-too` each cell's trained model is also read
out by k-means (clusterbench-recluster, outside the budget) in a second table. The study's budget is 5 minutes a cell (100 minutes for
the 20); `--minutes 1` or `--limit 10000` (a class-stratified subset) make a cheaper grid, which
the table's heading states. With `--out` the run folders are kept and a cell already finished
there is read, not re-run (an interrupted grid continues).

    python benchmarks/mnist_study_grid.py [--minutes 5] [--limit N] [--root ../shared/data] \
        [--threads 1] [--queues 16 32 64 128 256] [--momenta 0.9 0.99 0.999 0.9999] [--out DIR] \
        [--stage kmeans|umap] [--kmeans-too] [extra overrides, e.g. backbone=convnet]

Two processes with disjoint `--momenta` and the same `--out` fill one grid on two cores; a last call
with every momentum then only reads the cells and prints the whole table.

`--threads 1` (the default) is one core; `--threads 0` leaves torch's default (all cores:
faster, so more epochs fit in the budget).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import SHARED_DATA, finished, recluster, run_clusterbench

QUEUES = (16, 32, 64, 128, 256)
MOMENTA = (0.9, 0.99, 0.999, 0.9999)
# The study's ACC (%), study[momentum][queue]: 5 minutes a cell on a GPU, its 2-conv ConvNet.
STUDY = {
    0.9: {16: 91.38, 32: 95.11, 64: 95.16, 128: 95.31, 256: 94.42},
    0.99: {16: 92.98, 32: 93.27, 64: 96.91, 128: 96.14, 256: 95.36},
    0.999: {16: 92.91, 32: 94.29, 64: 96.23, 128: 94.87, 256: 93.39},
    0.9999: {16: 91.2, 32: 93.80, 64: 94.46, 128: 93.67, 256: 94.03},
}


def cell_overrides(args: argparse.Namespace, queue: int, momentum: float) -> list[str]:
    overrides = ["method=moco", "dataset=mnist", f"dataset.root={args.root}", f"trainer.max_minutes={args.minutes}",
                 f"method.queue_size={queue}", f"method.momentum={momentum}", f"seed={args.seed}", "plots.enabled=false"]
    if args.stage == "umap":  # the UMAP + GMM stage in the budget's last minutes, as experiment=mnist_5min
        overrides += ["cluster=umap", "cluster.minutes=1.5", "cluster.n_epochs=50", "cluster.init=pca"]
    if args.limit:
        overrides.append(f"dataset.limit={args.limit}")
    if args.threads:
        overrides.append(f"hardware.threads={args.threads}")
    return [*overrides, *args.overrides]


def run_cell(args: argparse.Namespace, out: Path, queue: int, momentum: float) -> tuple[dict, dict | None]:
    """The cell's run (reused when finished) and, with --kmeans-too, its k-means re-read."""
    folder = out / f"q{queue}_m{momentum}"
    run = finished(folder) or run_clusterbench(cell_overrides(args, queue, momentum), folder)
    if not args.kmeans_too or run.get("cluster", {}).get("name", "kmeans") == "kmeans":
        return run, None
    again = folder.with_name(folder.name + "_kmeans")
    return run, finished(again) or recluster(folder, "kmeans", again)


def read_out(run: dict) -> str:
    name = run.get("cluster", {}).get("name", "kmeans")
    return {"kmeans": "k-means", "umap": "UMAP + GMM", "gmm": "GMM", "scan": "SCAN"}.get(name, name) + " read-out"


def table(args: argparse.Namespace, results: dict[tuple[float, int], dict], note: str = "") -> str:
    queues, momenta = args.queues, args.momenta
    budget = f"{args.minutes:g} min a cell, {'MNIST ' + str(args.limit) + ' subset' if args.limit else 'MNIST 70k'}"
    budget += f", {args.threads} thread(s)" if args.threads else ", torch's default threads"
    first = next(iter(results.values()))
    lines = [f"ACC % ours ({budget}) / the study's (5 min, GPU) / difference, {read_out(first)}{note}, seed {args.seed}", "",
             "| momentum \\ queue | " + " | ".join(map(str, queues)) + " |", "|---" * (len(queues) + 1) + "|"]
    for m in momenta:
        cells = []
        for q in queues:
            ours = 100 * results[(m, q)]["acc"]
            study = STUDY.get(m, {}).get(q)
            cells.append(f"{ours:.1f} / {study:.2f} / {ours - study:+.1f}" if study is not None else f"{ours:.1f} / – / –")
        lines.append(f"| {m:g} | " + " | ".join(cells) + " |")
    best = max(results, key=lambda k: results[k]["acc"])
    epochs = [r.get("method_info", {}).get("epochs") for r in results.values()]
    epochs = [e for e in epochs if e is not None]
    lines += ["", f"best cell: queue {best[1]}, momentum {best[0]:g}: {100 * results[best]['acc']:.1f}% "
              f"(the study's best: queue 64, momentum 0.99: 96.91%)"]
    if epochs:
        lines.append(f"epochs a cell: {min(epochs):g}–{max(epochs):g}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="trainer.max_minutes of each cell (the study: 5)")
    parser.add_argument("--limit", type=int, default=None, help="dataset.limit: a class-stratified MNIST subset")
    parser.add_argument("--root", type=Path, default=SHARED_DATA)
    parser.add_argument("--threads", type=int, default=1, help="hardware.threads (0: torch's default)")
    parser.add_argument("--queues", type=int, nargs="+", default=list(QUEUES))
    parser.add_argument("--momenta", type=float, nargs="+", default=list(MOMENTA))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stage", default="kmeans", choices=("kmeans", "umap"), help="the cells' read-out (umap: inside the budget)")
    parser.add_argument("--kmeans-too", action="store_true", help="also read each cell's model out by k-means (outside the budget)")
    parser.add_argument("--out", type=Path, default=None, help="keep the run folders here; finished cells are reused")
    parser.add_argument("overrides", nargs="*", help="extra overrides for every cell (backbone=convnet, ...)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        out = args.out or Path(scratch)
        results, kmeans = {}, {}
        for m in args.momenta:
            for q in args.queues:
                r, km = run_cell(args, out, q, m)
                results[(m, q)] = r
                if km is not None:
                    kmeans[(m, q)] = km
                again = f", k-means ACC {100 * km['acc']:.2f}%" if km else ""
                print(f"<!-- queue {q}, momentum {m:g}: ACC {100 * r['acc']:.2f}%, NMI {100 * r['nmi']:.2f}%, "
                      f"{r.get('wall_seconds', 0):.0f} s{again} -->", flush=True)
        print(table(args, results))
        if kmeans:
            print("\n" + table(args, kmeans, " of the same models (outside the budget)"))


if __name__ == "__main__":
    main()
