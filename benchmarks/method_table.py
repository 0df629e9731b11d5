"""Every method on digits and real MNIST under one wall-clock budget, several seeds: the
NMI / ACC / ARI table in the MiCE paper's format (mean ± std, %), plus what the budget bought
(epochs) and the share of each epoch spent in the method's E-step.

    python benchmarks/method_table.py                                  # 8 methods × 2 datasets × 3 seeds
    python benchmarks/method_table.py --minutes 2 --datasets mnist --methods pcl swav
    python benchmarks/method_table.py --jobs 2 --threads 1             # two single-thread runs at once

``--minutes`` is ``trainer.max_minutes`` of every deep method (the classical ones fit to the
end); each method runs with its own recipe for the dataset (conf/method_dataset/). ``--jobs 2
--threads 1`` gives every run one core: all methods get the same compute, the table comes twice
as fast on 2 cores. Extra arguments are overrides for every run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

from _common import SHARED_DATA, mean_std, run_clusterbench

METHODS = ["kmeans", "gmm", "ae", "moco", "pcl", "swav", "deepcluster", "mice", "infogan", "scae"]
CLASSICAL = {"kmeans", "gmm"}


def estep_share(run_dir: Path) -> Optional[float]:
    """Σ epoch_start_s / Σ epoch_s over the run's epochs (None for a method without epochs)."""
    log = run_dir / "metrics.jsonl"
    if not log.exists():
        return None
    records = [json.loads(line) for line in log.read_text().splitlines()]
    total = sum(r.get("epoch_s", 0.0) for r in records)
    return sum(r.get("epoch_start_s", 0.0) for r in records) / total if total else None


def seconds_per_epoch(run_dir: Path) -> Optional[float]:
    """Mean wall seconds of the run's whole epochs (E-step included): the CPU cost per epoch."""
    log = run_dir / "metrics.jsonl"
    if not log.exists():
        return None
    records = [json.loads(line) for line in log.read_text().splitlines()]
    return statistics.mean(r["epoch_s"] for r in records) if records else None


def other_readouts(result: dict) -> dict[str, float]:
    """The ACC of the read-outs a method logs beside its own (InfoGAN's and SwAV's k-means on the
    features, MiCE's gating): ``<name>_acc`` in method_info, the probes left out."""
    info = result["method_info"]
    return {k[: -len("_acc")]: float(v) for k, v in info.items() if k.endswith("_acc") and k not in ("knn_acc", "linear_acc")
            and isinstance(v, (int, float)) and not isinstance(v, bool)}


def probes(result: dict) -> dict[str, float]:
    """The kNN and linear probes' ACC where the run had them (``eval.knn=true eval.linear=true``)."""
    info = result["method_info"]
    return {k[: -len("_acc")]: float(v) for k, v in info.items() if k in ("knn_acc", "linear_acc") and isinstance(v, (int, float))}


def one_run(method: str, dataset: str, seed: int, args: argparse.Namespace, extra: list[str], tmp: Path) -> dict:
    overrides = [f"method={method}", f"dataset={dataset}", f"seed={seed}", "plots.enabled=false", "save_assignments=false", *extra]
    if dataset != "digits":
        overrides.append(f"dataset.root={args.root}")
    if method not in CLASSICAL:
        overrides += [f"trainer.max_minutes={args.minutes}", "trainer.eval_every=0", "trainer.checkpoint_every=0"]
    if args.threads:
        overrides.append(f"hardware.threads={args.threads}")
    out = tmp / f"{method}_{dataset}_{seed}"
    result = run_clusterbench(overrides, out)
    result["estep_share"] = estep_share(out)
    result["epoch_s"] = seconds_per_epoch(out)
    print(f"  {method:12s} {dataset:7s} seed {seed}: NMI {100 * result['nmi']:.1f}  ACC {100 * result['acc']:.1f}  ARI {100 * result['ari']:.1f}"
          f"  ({result['method_info'].get('epochs', '-')} epochs, {result['wall_seconds']:.0f} s)", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=str(SHARED_DATA))
    parser.add_argument("--minutes", type=float, default=10.0, help="trainer.max_minutes of every deep method")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--datasets", nargs="+", default=["digits", "mnist"])
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time")
    parser.add_argument("--threads", type=int, default=None, help="hardware.threads of every run")
    args, extra = parser.parse_known_args()

    cells = [(m, d, s) for m in args.methods for d in args.datasets for s in args.seeds]
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda c: one_run(*c, args, extra, Path(tmp)), cells))
    by = {(m, d): [r for (m2, d2, _), r in zip(cells, results) if (m2, d2) == (m, d)] for m in args.methods for d in args.datasets}

    print(f"\nNMI / ACC / ARI (%), mean ± std over seeds {args.seeds}; deep methods: trainer.max_minutes={args.minutes}"
          f"{f', hardware.threads={args.threads}, {args.jobs} runs at a time' if args.threads else ''}; train + test, K = #classes\n")
    print("| method | " + " | ".join(args.datasets) + " |")
    print("|---|" + "---|" * len(args.datasets))
    for m in args.methods:
        row = [" / ".join(mean_std([r[k] for r in by[m, d]]) for k in ("nmi", "acc", "ari")) for d in args.datasets]
        print(f"| {m} | " + " | ".join(row) + " |")

    print("\n| method | dataset | epochs in budget | s per epoch | wall s | E-step share of an epoch | other read-outs, ACC % | probes, ACC % |\n"
          "|---|---|---|---|---|---|---|---|")
    for m in args.methods:
        for d in args.datasets:
            runs = by[m, d]
            wall = statistics.mean(r["wall_seconds"] for r in runs)
            others = sorted({name for r in runs for name in other_readouts(r)})
            other = ", ".join(f"{name} {mean_std([other_readouts(r)[name] for r in runs if name in other_readouts(r)])}" for name in others) or "-"
            probe = ", ".join(f"{name} {mean_std([probes(r)[name] for r in runs if name in probes(r)])}"
                              for name in sorted({n for r in runs for n in probes(r)})) or "-"
            epochs = [r["method_info"].get("epochs") for r in runs if "epochs" in r["method_info"]]
            if not epochs:
                print(f"| {m} | {d} | - | - | {wall:.0f} | - | {other} | {probe} |")
                continue
            shares = [r["estep_share"] for r in runs if r["estep_share"] is not None]
            per_epoch = [r["epoch_s"] for r in runs if r["epoch_s"] is not None]
            print(f"| {m} | {d} | {statistics.mean(epochs):.1f} | {f'{statistics.mean(per_epoch):.1f}' if per_epoch else '-'} | {wall:.0f} | "
                  f"{f'{100 * statistics.mean(shares):.1f} %' if shares else '-'} | {other} | {probe} |")


if __name__ == "__main__":
    main()
