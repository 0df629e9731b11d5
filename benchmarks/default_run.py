"""The default experiment (`clusterbench`: MoCo on digits, read out by its recipe's SCAN stage),
seed by seed, against the same training read out by k-means (`cluster=kmeans`) and k-means on
the pixels. The default must end at ≥ 95 % ACC for seeds 0, 1, 2 within a minute on 2 CPU cores,
plots included, and must not fall from its best evaluation to a much worse final one.

Per seed: the final NMI / ACC / ARI, the best ACC any evaluation during the run reached (the
method's k-means evaluations every 10 epochs and each SCAN step's read-out), and the wall time
of the whole process (start-up, training, the stage, exports, plots), timed from outside.

    python benchmarks/default_run.py [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import mean_std


def timed_run(overrides: list[str], out: Path) -> tuple[dict, list[dict], float]:
    cmd = [sys.executable, "-m", "clusterbench", *overrides, f"hydra.run.dir={out}"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()] if (out / "metrics.jsonl").exists() else []
    return json.loads((out / "metrics.json").read_text()), history, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    rows = {"clusterbench (default: moco + scan)": [], "moco, cluster=kmeans": [], "kmeans on pixels": []}
    print("| run | seed | NMI % | ACC % | ARI % | best ACC during the run % | wall s (with plots) |\n|---|---|---|---|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for slug, (name, extra) in enumerate((("clusterbench (default: moco + scan)", []), ("moco, cluster=kmeans", ["cluster=kmeans"]),
                                                  ("kmeans on pixels", ["method=kmeans"]))):
                m, history, wall = timed_run([*extra, f"seed={seed}"], Path(tmp) / f"run{slug}_seed{seed}")  # a plain path Hydra parses
                best = max([r["acc"] for r in history if "acc" in r] + [m["acc"]])
                rows[name].append((m, wall))
                print(f"| {name} | {seed} | {100 * m['nmi']:.1f} | {100 * m['acc']:.1f} | {100 * m['ari']:.1f} | {100 * best:.1f} | {wall:.1f} |", flush=True)
    print("\n| run | NMI % | ACC % | ARI % | wall s |\n|---|---|---|---|---|")
    for name, runs in rows.items():
        cells = [mean_std([m[key] for m, _ in runs]) for key in ("nmi", "acc", "ari")]
        print(f"| {name} | {' | '.join(cells)} | {sum(w for _, w in runs) / len(runs):.1f} |")


if __name__ == "__main__":
    main()
