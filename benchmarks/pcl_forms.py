"""PCL's ProtoNCE in the official code's form (the default) against the printed per-row form
(`method.proto_nce=paper`), same recipe, same seeds, same budget.

For each form and seed: one run of PCL's recipe for the dataset (digits: 50 epochs, read out by
its SCAN stage; mnist: experiment=mnist_5min method=pcl, UMAP + GMM inside 5 minutes), then the
same model read out by k-means (the paper's protocol; clusterbench-recluster). Prints NMI / ACC /
ARI mean ± std per form and read-out. Finished runs under --out are reused.

    python benchmarks/pcl_forms.py [--dataset digits|mnist] [--seeds 3] [--threads 1] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import SHARED_DATA, finished, mean_std, recluster, run_clusterbench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits", choices=("digits", "mnist"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--root", type=Path, default=SHARED_DATA)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    base = ["method=pcl", "plots.enabled=false", f"hardware.threads={args.threads}"]
    if args.dataset == "mnist":
        base += ["experiment=mnist_5min", f"dataset.root={args.root}", "eval.knn=true", "eval.linear=true"]
    with tempfile.TemporaryDirectory() as scratch:
        out = args.out or Path(scratch)
        print(f"PCL on {args.dataset}, {args.seeds} seeds, {args.threads} thread(s)\n")
        print("| ProtoNCE form | read-out | NMI % | ACC % | ARI % | ACC per seed |\n|---|---|---|---|---|---|")
        for form in ("official", "paper"):
            runs, kms = [], []
            for seed in range(args.seeds):
                folder = out / f"{form}{seed}"
                runs.append(finished(folder) or run_clusterbench([*base, f"method.proto_nce={form}", f"seed={seed}"], folder))
                again = out / f"{form}{seed}_kmeans"
                kms.append(finished(again) or recluster(folder, "kmeans", again))
            stage = runs[0].get("cluster", {}).get("name", "kmeans")
            for name, rows in ((stage, runs), ("kmeans", kms)):
                cells = " | ".join(mean_std([r[m] for r in rows]) for m in ("nmi", "acc", "ari"))
                print(f"| {form} | {name} | {cells} | {[round(100 * r['acc'], 1) for r in rows]} |", flush=True)


if __name__ == "__main__":
    main()
