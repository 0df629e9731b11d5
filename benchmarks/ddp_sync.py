"""DDP's bucketed all-reduce, overlapped with the backward, against one flat all-reduce after it.

Two gloo ranks on this machine (one torchrun, one process group: tests/ddp_worker.py) run
MoCo with ResNet-18 (CIFAR stem, 32 px) at a small batch through the real engine, alternating
``hardware.grad_sync=ddp`` and ``hardware.grad_sync=flat`` job by job, so both see the same
machine; each job's second epoch is timed (the first builds kernels and buckets).

    python benchmarks/ddp_sync.py [--batch 32] [--steps 12] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

WORKER = Path(__file__).resolve().parents[1] / "tests" / "ddp_worker.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32, help="global batch (each rank takes half)")
    parser.add_argument("--steps", type=int, default=12, help="steps per epoch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    parser.add_argument("--port", type=int, default=29641)
    args = parser.parse_args()
    modes = ("ddp", "flat")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        common = ["method=moco", "dataset=synthetic", f"dataset.num_samples={args.batch * args.steps}", "dataset.image_size=32",
                  "dataset.channels=3", "augment=mocov2", "augment.blur=0", "backbone=resnet18", f"trainer.batch_size={args.batch}",
                  "trainer.epochs=2", "trainer.eval_every=0", "trainer.checkpoint_every=0", f"hardware.threads={args.threads}",
                  "method.queue_size=256", "plots.enabled=false", "export.features=false", "export.model=false"]
        jobs = [[*common, f"hardware.grad_sync={mode}", f"hydra.run.dir={out / f'{mode}{r}'}"] for r in range(args.repeats) for mode in modes]
        spec = out / "spec.json"
        spec.write_text(json.dumps({"jobs": jobs}))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={args.port}", str(WORKER), str(spec)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-3000:])
        rate = {m: [] for m in modes}
        for r in range(args.repeats):
            for mode in modes:
                lines = (out / f"{mode}{r}" / "metrics.jsonl").read_text().splitlines()
                rate[mode].append(json.loads(lines[-1])["images_per_s"])
    ms = {m: 1000 * args.batch / statistics.median(v) for m, v in rate.items()}
    print(f"MoCo + ResNet-18 (CIFAR stem, 32 px), 2 gloo ranks × {args.threads} thread(s), global batch {args.batch}, "
          f"{args.steps} steps an epoch, median of {args.repeats} alternated jobs (second epochs)\n")
    print("| gradient sync | step ms | images/s (all ranks) | vs flat |\n|---|---|---|---|")
    for m in modes:
        print(f"| {m} | {ms[m]:.0f} | {statistics.median(rate[m]):.0f} | {ms['flat'] / ms[m]:.2f}× |")


if __name__ == "__main__":
    main()
