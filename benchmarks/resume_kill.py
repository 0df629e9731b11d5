"""Resume after kill -9: an uninterrupted run against one killed mid-training and resumed.

    python benchmarks/resume_kill.py                       # MoCo on digits, 30 epochs, killed at ~50%
    python benchmarks/resume_kill.py --kill-at 0.3 dataset=mnist dataset.root=../shared/data dataset.limit=10000 trainer.epochs=5

The killed run is started again with resume=true and the same hydra.run.dir; on the CPU with a
fixed seed its final NMI / ACC / ARI and its per-epoch losses must equal the uninterrupted run's.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import run_clusterbench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kill-at", type=float, default=0.5, help="fraction of the uninterrupted run's wall time")
    args, overrides = parser.parse_known_args()
    base = ["hardware=cpu", "trainer.eval_every=0", "plots.enabled=false", "seed=1", *(overrides or ["trainer.epochs=30"])]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        whole = run_clusterbench(base, Path(tmp) / "whole")
        wall = time.perf_counter() - t0

        killed = Path(tmp) / "killed"
        cmd = [sys.executable, "-m", "clusterbench", *base, f"hydra.run.dir={killed}"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
        time.sleep(args.kill_at * wall)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        import torch

        epoch = torch.load(killed / "checkpoint.pt", weights_only=True)["epoch"] if (killed / "checkpoint.pt").exists() else 0
        t0 = time.perf_counter()
        resumed = run_clusterbench([*base, "resume=true"], killed)
        resume_wall = time.perf_counter() - t0

        def losses(folder: Path) -> list[float]:
            return [json.loads(line)["loss"] for line in (folder / "metrics.jsonl").read_text().splitlines()]

        print(f"clusterbench {' '.join(base)}\n")
        print("| run | NMI % | ACC % | ARI % | wall s |\n|---|---|---|---|---|")
        for name, r, w in (("uninterrupted", whole, wall), (f"kill -9 at {args.kill_at:.0%} (checkpoint of epoch {epoch}), resumed", resumed, resume_wall)):
            print(f"| {name} | {100 * r['nmi']:.3f} | {100 * r['acc']:.3f} | {100 * r['ari']:.3f} | {w:.1f} |")
        same = all(whole[k] == resumed[k] for k in ("nmi", "acc", "ari")) and losses(Path(tmp) / "whole") == losses(killed)
        print(f"\nidentical final metrics and per-epoch losses: {same}")


if __name__ == "__main__":
    main()
