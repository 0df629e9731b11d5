"""Full MNIST (70k, train + test) in 5 minutes of wall time on this machine, evaluation included.

For each deep method: `experiment=mnist_5min method=<method>`, i.e. its MNIST recipe
(conf/method_dataset/<method>_mnist.yaml) under `trainer.max_minutes=5` with the UMAP + GMM stage
in the budget's last `--stage-minutes` (`deepcluster` is exactly `experiment=mnist_5min`), seeds
0..n-1; then the same trained model read out by k-means (`clusterbench-recluster RUN
cluster=kmeans`, not in the 5 minutes). Prints NMI / ACC / ARI mean ± std for both read-outs, the
run's wall time, and the stage's share of it. `--stage scan` reads out with SCAN instead.

Every run also probes its features (eval.knn, eval.linear): MNIST's own split, fitted on the 60k
train images' labels, scored on the 10k test images (the network saw all 70k unlabelled, the
clustering protocol). A second table gives knn_acc / linear_acc beside the clustering ACC and the
probes' seconds as a share of the run. With `--out`, finished runs are read, not re-run; a run
from before the probes (no ``probes`` in its metrics.json) is probed afterwards from its model.pt,
embedded as the run embedded it (``timed: after``).

    python benchmarks/mnist_5min.py [--methods deepcluster moco ...|all] [--seeds 3] [--root ../shared/data] [--threads 1] \
        [--out DIR] [extra overrides, e.g. method.proto_nce=paper]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from _common import SHARED_DATA, finished, mean_std, recluster, run_clusterbench

METHODS = ("deepcluster", "moco", "pcl", "swav", "mice", "ae")


PROBES = ["eval.knn=true", "eval.linear=true"]


def probe_afterwards(run_dir: Path) -> dict:
    """The in-run probes' scores for a run made without them: its model.pt re-embeds its images
    (as the run did), and the run's own probe protocol scores them. Also records the seconds."""
    import time

    from omegaconf import OmegaConf

    from clusterbench import runfolder
    from clusterbench.data import build_dataset
    from clusterbench.predict import embed_images, resolve
    from clusterbench.probes.protocol import probe_protocol

    state = runfolder.read_model(run_dir)
    cfg = OmegaConf.create(state["config"])
    cfg.eval.knn = cfg.eval.linear = True
    data = build_dataset(cfg.dataset, int(cfg.seed))
    _, features = embed_images(state, cfg, data.train_images(), resolve("cpu"), progress=False)
    protocol = probe_protocol(data, cfg.eval, int(cfg.seed))
    t0 = time.perf_counter()
    scores = protocol.scores(features[: len(data)])
    return {**scores, "split": protocol.how, "seconds": time.perf_counter() - t0, "timed": "after"}


def probes_of(run: dict, run_dir: Path) -> dict:
    if run.get("probes"):
        return {**run["probes"], "seconds": run["timings"].get("probes", 0.0), "timed": "in run"}
    cache = run_dir / "probes_afterwards.json"
    if not cache.exists():
        cache.write_text(json.dumps(probe_afterwards(run_dir)))
    return json.loads(cache.read_text())


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
    parser.add_argument("overrides", nargs="*", help="extra overrides for every run, e.g. method.proto_nce=paper")
    args = parser.parse_args()
    methods = METHODS if "all" in args.methods else args.methods

    print("| method | read-out | NMI % | ACC % | ARI % | wall s (run) | stage s (share) | epochs |\n|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.out or Path(scratch)
        probe_rows = []
        for method in methods:
            runs, kms, probes = [], [], []
            for seed in range(args.seeds):
                run_dir = Path(tmp) / f"{method}{seed}"
                overrides = ["experiment=mnist_5min", f"method={method}", f"dataset.root={args.root}", f"trainer.max_minutes={args.minutes}",
                             f"cluster.minutes={args.stage_minutes}", f"seed={seed}", "hardware=cpu"]
                if args.stage == "scan":
                    overrides += ["cluster=scan", "cluster.lr=1e-3"]
                if args.threads:
                    overrides.append(f"hardware.threads={args.threads}")
                runs.append(finished(run_dir) or run_clusterbench([*overrides, *PROBES, *args.overrides], run_dir))
                again = Path(tmp) / f"{method}{seed}_kmeans"
                kms.append(finished(again) or recluster(run_dir, "kmeans", again))
                probes.append(probes_of(runs[-1], run_dir))
            wall = statistics.mean(r["wall_seconds"] for r in runs)
            stage = statistics.mean(r["timings"].get("cluster_stage", 0.0) for r in runs)
            epochs = statistics.mean(r["method_info"]["epochs"] for r in runs)
            for name, rows in (("UMAP + GMM" if args.stage == "umap" else "SCAN", runs), ("k-means", kms)):
                cells = " | ".join(mean_std([r[m] for r in rows]) for m in ("nmi", "acc", "ari"))
                timing = f"{wall:.0f} | {stage:.0f} ({stage / wall:.0%}) | {epochs:.1f}" if rows is runs else "same model | – | –"
                print(f"| {method} | {name} | {cells} | {timing} |", flush=True)
            print(f"<!-- {method} ACC per seed: {args.stage} {[round(100 * r['acc'], 1) for r in runs]}, k-means {[round(100 * r['acc'], 1) for r in kms]} -->")
            probe_rows.append((method, runs, probes))
        print("\n| method | clustering ACC % | knn_acc % | linear_acc % | probes s (share of run) | timed |\n|---|---|---|---|---|---|")
        for method, runs, probes in probe_rows:
            seconds = statistics.mean(p["seconds"] for p in probes)
            wall = statistics.mean(r["wall_seconds"] for r in runs)
            timed = ", ".join(sorted({p["timed"] for p in probes}))
            print(f"| {method} | {mean_std([r['acc'] for r in runs])} | {mean_std([p['knn_acc'] for p in probes])} | "
                  f"{mean_std([p['linear_acc'] for p in probes])} | {seconds:.1f} ({seconds / wall:.1%}) | {timed} |")
        print(f"\nprobes: {probes[0]['split'] if probe_rows else ''}; the network trained on all 70k images without labels")


if __name__ == "__main__":
    main()
