"""Every deep method's automatic CIFAR-10 recipe under a CPU wall-clock budget, beside k-means on pixels.

Each method runs `clusterbench method=M dataset=cifar10` (its recipe: views, method settings,
optimiser, schedule, precision) with `trainer.max_minutes` (15 by default; the schedule is
compressed into the budget by the trainer) on all 60,000 images. The papers' ResNets cannot move
in 15 minutes of one CPU core (about one epoch), so `--backbone strided` (the default) swaps in
the small strided net; `--backbone recipe` keeps the recipe's own. Every epoch is evaluated
(the recipe's read-out, and the weighted kNN probe on the 50k → 10k split), so each run folder
holds its curves (metrics.jsonl, curves.png).

Prints one Markdown table: NMI / ACC / ARI, kNN, epochs done, training images/s, wall time, and
the run folder, with k-means on raw pixels (same seed) as the first row. Finished runs under
--out are reused.

    python benchmarks/cifar10_budget.py --minutes 15 --threads 1 --out /tmp/cifar15
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from _common import SHARED_DATA, finished, run_clusterbench

METHODS = ("moco", "pcl", "swav", "deepcluster", "mice", "ae")


def curve(run_dir: Path) -> str:
    """ACC (%) at each evaluated epoch, e.g. '1:18.2 2:21.0 3:24.9'."""
    log = run_dir / "metrics.jsonl"
    if not log.exists():
        return ""
    records = [json.loads(line) for line in log.read_text().splitlines()]
    return " ".join(f"{r['epoch']}:{100 * r['acc']:.1f}" for r in records if "acc" in r)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=SHARED_DATA)
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--backbone", default="strided", help="'recipe' keeps each recipe's own backbone")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args, extra = parser.parse_known_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="cifar10_budget_"))
    common = ["dataset=cifar10", f"dataset.root={args.root}", f"seed={args.seed}", f"hardware.threads={args.threads}", *extra]

    rows = []
    base_dir = out / "kmeans"
    base = finished(base_dir) or run_clusterbench(["method=kmeans", "plots.enabled=false", *common], base_dir)
    rows.append(("kmeans (pixels)", "pixels", base, base_dir))
    for method in args.methods:
        run_dir = out / method
        overrides = [f"method={method}", f"trainer.max_minutes={args.minutes}", "trainer.eval_every=1", "eval.knn=true", *common]
        # the AE's recipe is its own MLP on pixels; the contrastive recipes' ResNets are what gets swapped
        backbone = "recipe" if method == "ae" else args.backbone
        if backbone != "recipe":
            overrides.append(f"backbone={backbone}")
        result = finished(run_dir)
        if result is None:
            print(f"running {method} ({args.minutes} min) ...", flush=True)
            try:
                result = run_clusterbench(overrides, run_dir)
            except RuntimeError as ex:  # one failing method must not lose the others' rows
                print(f"  {method} failed: {str(ex)[-400:]}", flush=True)
                continue
        rows.append((method, backbone, result, run_dir))
        print(f"  {method}: ACC {100 * result['acc']:.1f}  curve {curve(run_dir)}", flush=True)

    print(f"\nCIFAR-10, all 60,000 images, K = 10, seed {args.seed}, trainer.max_minutes={args.minutes}, hardware.threads={args.threads}\n")
    print("| method | backbone | NMI % | ACC % | ARI % | kNN % | epochs | train img/s | wall s | ACC by epoch | run |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, backbone, r, run_dir in rows:
        info = r.get("method_info", {})
        knn = r.get("knn_acc", info.get("knn_acc"))
        print(f"| {name} | {backbone} | {100 * r['nmi']:.1f} | {100 * r['acc']:.1f} | {100 * r['ari']:.1f} | "
              f"{'-' if knn is None else f'{100 * knn:.1f}'} | {info.get('epochs', '-')} | "
              f"{info.get('images_per_s', 0):.0f} | {r['wall_seconds']:.0f} | {curve(run_dir)} | {run_dir} |")


if __name__ == "__main__":
    main()
