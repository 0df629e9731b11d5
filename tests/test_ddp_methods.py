"""The clustering methods' cross-rank parts under DDP: two gloo processes on the CPU (torchrun).

Each run must finish (a collective that only one rank enters would hang until the timeout) and
log what only works when the ranks agree: PCL's and DeepCluster's E-steps (rank 0's k-means
broadcast), SwAV's queue and all-reduced Sinkhorn, MiCE's gathered keys and μ update.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

TINY = ["dataset=synthetic", "dataset.num_samples=96", "backbone=strided", "backbone.widths=[8,16]", "trainer.batch_size=32",
        "trainer.epochs=2", "trainer.eval_every=0", "plots.enabled=false"]

CASES = {
    "pcl": ["method=pcl", "method.queue_size=64", "method.head_hidden=32", "method.feature_dim=16", "method.num_prototypes=[3,6]",
            "method.warmup_epochs=1", "method.estep_restarts=1", "method.negative_prototypes=3"],
    "swav": ["method=swav", "method.head_hidden=32", "method.feature_dim=16", "method.num_prototypes=3", "method.freeze_prototypes_niters=2",
             "method.queue_length=32", "method.epoch_queue_starts=1"],
    "deepcluster-v1": ["method=deepcluster", "method.num_prototypes=8", "method.pca_dim=8"],
    "deepcluster-v2": ["method=deepcluster", "method.version=v2", "method.num_prototypes=8", "method.num_heads=2", "method.head_hidden=16",
                       "method.feature_dim=8"],
    "mice": ["method=mice", "method.queue_size=40", "method.feature_dim=8"],
}
# what the last epoch's metrics.jsonl line must hold for each
LOGGED = {"pcl": "estep_k6_inertia", "swav": "queue_used", "deepcluster-v1": "nmi_prev", "deepcluster-v2": "nmi_prev", "mice": "mu_shift"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_method_trains_on_two_cpu_ranks(tmp_path, case):
    run_dir = tmp_path / "ddp"
    port = 29530 + sorted(CASES).index(case)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}", "-m", "clusterbench",
           *TINY, *CASES[case], "hardware=ddp", "hardware.device=cpu", "hardware.threads=1", f"hydra.run.dir={run_dir}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n_samples"] == 96 and metrics["method_info"]["steps"] == 6 and 0 <= metrics["acc"] <= 1
    last = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()][-1]
    assert LOGGED[case] in last
    if case == "swav":
        assert last["queue_used"] > 0  # each rank's share of the queue filled and joined Sinkhorn
    if case == "mice":
        assert "gating_acc" in metrics["method_info"]
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["epoch"] == 2
