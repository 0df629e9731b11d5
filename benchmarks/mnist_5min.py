"""Full MNIST (70k, train + test) in 5 minutes of wall time on this machine, evaluation included.

For each deep method: `experiment=mnist_5min method=<method>`, i.e. its MNIST recipe
(conf/method_dataset/<method>_mnist.yaml) under `trainer.max_minutes=5` with the UMAP + GMM stage
in the budget's last `--stage-minutes` (`deepcluster` is exactly `experiment=mnist_5min`), seeds
0..n-1; then the same trained model read out by k-means (`clusterbench-recluster RUN
cluster=kmeans`, not in the 5 minutes). Prints NMI / ACC / ARI mean ± std for both read-outs, the
run's wall time, and the stage's share of it. `--stage scan` reads out with SCAN instead.

    python benchmarks/mnist_5min.py [--methods deepcluster moco ...|all] [--seeds 3] [--root ../shared/data] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import SHARED_DATA, mean_std, run_clusterbench

METHODS = ("deepcluster", "moco", "pcl", "swav", "mice", "ae")


def recluster_kmeans(run_dir: Path, out: Path) -> dict:
    cmd = [sys.executable, "-m", "clusterbench.recluster", str(run_dir), "cluster=kmeans", "--out", str(out), "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return json.loads((out / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["deepcluster"], choices=[*METHODS, "all"])
    parser.add_argument("--stage", default="umap", choices=("umap", "scan"))
    parser.add_argument("--threads", type=int, default=None, help="hardware.threads of every run (default: every core)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--stage-minutes", type=float, default=1.5)
    parser.add_argument("--root", type=Path, default=SHARED_DATA)
    parser.add_argument("--out", type=Path, default=None, help="keep the run folders here (default: a temporary folder)")
    args = parser.parse_args()
    methods = METHODS if "all" in args.methods else args.methods

    print("| method | read-out | NMI % | ACC % | ARI % | wall s (run) | stage s (share) | epochs |\n|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.out or Path(scratch)
        for method in methods:
            runs, kms = [], []
            for seed in range(args.seeds):
                run_dir = Path(tmp) / f"{method}{seed}"
                overrides = ["experiment=mnist_5min", f"method={method}", f"dataset.root={args.root}", f"trainer.max_minutes={args.minutes}",
                             f"cluster.minutes={args.stage_minutes}", f"seed={seed}", "hardware=cpu"]
                if args.stage == "scan":
                    overrides += ["cluster=scan", "cluster.lr=1e-3"]
                if args.threads:
                    overrides.append(f"hardware.threads={args.threads}")
                runs.append(run_clusterbench(overrides, run_dir))
                kms.append(recluster_kmeans(run_dir, Path(tmp) / f"{method}{seed}_kmeans"))
            wall = statistics.mean(r["wall_seconds"] for r in runs)
            stage = statistics.mean(r["timings"].get("cluster_stage", 0.0) for r in runs)
            epochs = statistics.mean(r["method_info"]["epochs"] for r in runs)
            for name, rows in (("UMAP + GMM" if args.stage == "umap" else "SCAN", runs), ("k-means", kms)):
                cells = " | ".join(mean_std([r[m] for r in rows]) for m in ("nmi", "acc", "ari"))
                timing = f"{wall:.0f} | {stage:.0f} ({stage / wall:.0%}) | {epochs:.1f}" if rows is runs else "same model | – | –"
                print(f"| {method} | {name} | {cells} | {timing} |", flush=True)
            print(f"<!-- {method} ACC per seed: {args.stage} {[round(100 * r['acc'], 1) for r in runs]}, k-means {[round(100 * r['acc'], 1) for r in kms]} -->")


if __name__ == "__main__":
    main()
