"""DDP (torch's DistributedDataParallel) across ranks and nodes, on 2 gloo CPU processes.

One torchrun runs every job below in one process group (tests/ddp_worker.py), so the suite pays
for one start-up. Every deep method runs 2 epochs on 2 ranks and in this process on the whole
batch; the per-epoch losses must agree to float tolerance. The networks have no BatchNorm here: per-rank BatchNorm
statistics differ from the global batch's by design (SyncBatchNorm, CUDA only, shares them).
Views agree because every rank draws the global batch's augmentation and keeps its rows.
PCL runs its per-row form with every other prototype as a negative: the official form's
logits span the rank's own batch, as in the official code, so it depends on the per-device
batch by design.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

WORKER = str(Path(__file__).with_name("ddp_worker.py"))
COMMON = ["dataset=synthetic", "dataset.num_samples=96", "backbone=mlp", "backbone.hidden=[32]", "trainer.batch_size=32",
          "trainer.epochs=2", "trainer.eval_every=0", "hardware.threads=1", "plots.enabled=false", "export.features=false"]
CASES = {
    "moco": ["method=moco", "method.queue_size=64", "method.head_hidden=32", "method.feature_dim=16"],
    "pcl": ["method=pcl", "method.queue_size=64", "method.head_hidden=32", "method.feature_dim=16", "method.num_prototypes=[3,6]",
            "method.warmup_epochs=1", "method.estep_restarts=1", "method.proto_nce=paper", "method.negative_prototypes=5"],
    "swav": ["method=swav", "method.head_hidden=32", "method.head_batch_norm=false", "method.feature_dim=16", "method.num_prototypes=3",
             "method.freeze_prototypes_niters=2", "method.queue_length=32", "method.epoch_queue_starts=1"],
    "deepcluster-v1": ["method=deepcluster", "method.num_prototypes=8", "method.pca_dim=8"],
    "deepcluster-v2": ["method=deepcluster", "method.version=v2", "method.num_prototypes=8", "method.num_heads=2", "method.head_hidden=16",
                       "method.head_batch_norm=false", "method.feature_dim=8"],
    "mice": ["method=mice", "method.queue_size=40", "method.feature_dim=8"],
    "ae": ["method=ae", "method.embedding_dim=4", "method.decoder_hidden=[32]"],
    # two optimisers stepped inside the step (D then G), each all-reduced after its backward
    "infogan": ["method=infogan", "method.noise_dim=8", "method.batch_norm=false", "trainer.lr=2e-4"],
    # presence noise drawn for the global batch; the between-example sparsity terms are per-rank
    # batch statistics (as on one GPU per rank), so the equality holds with them off
    "scae": ["method=scae", "method.part_capsules=4", "method.object_capsules=3", "method.template_size=3", "method.set_output_dim=8",
             "method.capsule_hidden=8", "method.prior_between_weight=0", "method.posterior_between_weight=0", "trainer.optimizer=rmsprop",
             "trainer.lr=1e-3"],
}
# The same methods with BatchNorm (per-rank statistics) and their cross-rank parts: each must
# finish (a collective only one rank enters would hang) and log what only works when the ranks
# agree: PCL's and DeepCluster's E-steps (rank 0's k-means broadcast), SwAV's queue and
# all-reduced Sinkhorn, MiCE's gathered keys and μ update.
BN = ["dataset=synthetic", "dataset.num_samples=96", "backbone=strided", "backbone.widths=[8,16]", "trainer.batch_size=32",
      "trainer.epochs=2", "trainer.eval_every=0", "hardware.threads=1", "plots.enabled=false"]
BN_CASES = {
    "moco": ["method=moco", "method.queue_size=64", "method.head_hidden=32", "method.feature_dim=16", "trainer.eval_every=1"],
    "pcl": ["method=pcl", "method.queue_size=64", "method.head_hidden=32", "method.feature_dim=16", "method.num_prototypes=[3,6]",
            "method.warmup_epochs=1", "method.estep_restarts=1", "method.negative_prototypes=3"],
    "swav": ["method=swav", "method.head_hidden=32", "method.feature_dim=16", "method.num_prototypes=3", "method.freeze_prototypes_niters=2",
             "method.queue_length=32", "method.epoch_queue_starts=1"],
    "deepcluster-v1": ["method=deepcluster", "method.num_prototypes=8", "method.pca_dim=8"],
    "deepcluster-v2": ["method=deepcluster", "method.version=v2", "method.num_prototypes=8", "method.num_heads=2", "method.head_hidden=16",
                       "method.feature_dim=8"],
    "mice": ["method=mice", "method.queue_size=40", "method.feature_dim=8"],
    "infogan": ["method=infogan", "method.noise_dim=8", "trainer.lr=2e-4"],
    "scae": ["method=scae", "method.part_capsules=4", "method.object_capsules=3", "method.template_size=3", "method.set_output_dim=8",
             "method.capsule_hidden=8", "trainer.optimizer=rmsprop", "trainer.lr=1e-3"],
}
# SCAN's two steps train the pretext network with heads of their own (the pretext method's
# projection heads and key encoders get no gradients there: DDP must know)
BN_CASES["moco+scan"] = [*BN_CASES["moco"], "cluster=scan", "cluster.num_neighbors=5", "cluster.num_heads=2", "cluster.epochs=2",
                         "cluster.batch_size=16", "cluster.selflabel_epochs=2", "cluster.selflabel_batch_size=32", "cluster.threshold=0.2"]
# what the last epoch's metrics.jsonl line must hold for each
LOGGED = {"moco+scan": "confident", "moco": "nmi", "pcl": "estep_k6_inertia", "swav": "queue_used", "deepcluster-v1": "nmi_prev", "deepcluster-v2": "nmi_prev", "mice": "mu_shift", "infogan": "q_code_acc", "scae": "posterior_between"}
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def torchrun(spec: dict, tmp: Path, port: int, nodes: int = 1, timeout: float = 300) -> list[subprocess.CompletedProcess]:
    """tests/ddp_worker.py on 2 ranks: one node of 2 processes, or 2 nodes of 1 (two torchrun
    agents meeting at 127.0.0.1:port, as two machines would)."""
    path = tmp / f"spec{port}.json"
    path.write_text(json.dumps(spec))
    launch = [sys.executable, "-m", "torch.distributed.run", "--master_addr=127.0.0.1", f"--master_port={port}"]
    if nodes == 1:
        cmds = [[*launch, "--nproc_per_node=2", WORKER, str(path)]]
    else:
        cmds = [[*launch, f"--nnodes={nodes}", "--nproc_per_node=1", f"--node_rank={r}", WORKER, str(path)] for r in range(nodes)]
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV) for c in cmds]
    results = []
    for proc, cmd in zip(procs, cmds):
        out, err = proc.communicate(timeout=timeout)
        results.append(subprocess.CompletedProcess(cmd, proc.returncode, out, err))
    return results


def losses(run_dir: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def two_rank_runs(tmp_path_factory) -> Path:
    """Every case on 2 ranks, in one torchrun."""
    tmp = tmp_path_factory.mktemp("ddp")
    jobs = [[*COMMON, *args, f"hydra.run.dir={tmp / 'runs' / case}"] for case, args in CASES.items()]
    jobs += [[*BN, *args, f"hydra.run.dir={tmp / 'runs' / ('bn-' + case)}"] for case, args in BN_CASES.items()]
    (result,) = torchrun({"jobs": jobs}, tmp, port=29571)
    assert result.returncode == 0, result.stderr[-4000:]
    return tmp / "runs"


@pytest.mark.parametrize("case", list(CASES))
def test_two_ranks_give_the_losses_of_one_process(two_rank_runs, run_cli, case):
    single = run_cli(*COMMON, *CASES[case], "hardware=cpu")
    assert single.code == 0, single.err
    ddp, one = losses(two_rank_runs / case), losses(single.run_dir)
    assert len(ddp) == len(one) == 2
    assert ddp == pytest.approx(one, rel=1e-4, abs=1e-5), (case, ddp, one)
    metrics = json.loads((two_rank_runs / case / "metrics.json").read_text())
    assert metrics["method_info"]["steps"] == 6 and metrics["n_samples"] == 96


@pytest.mark.parametrize("case", list(BN_CASES))
def test_methods_with_batchnorm_train_on_two_ranks(two_rank_runs, case):
    run_dir = two_rank_runs / f"bn-{case}"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    last = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()][-1]
    if case == "moco+scan":
        assert last["stage"] == "selflabel" and metrics["method_info"]["scan"]["selflabel_epochs"] == 2
        assert (run_dir / "checkpoint_selflabel.pt").exists() and 0 <= metrics["acc"] <= 1
        return
    assert metrics["n_samples"] == 96 and metrics["method_info"]["steps"] == 6 and 0 <= metrics["acc"] <= 1
    assert LOGGED[case] in last
    if case == "swav":
        assert last["queue_used"] > 0  # each rank's share of the queue filled and joined Sinkhorn
    if case == "mice":
        assert "gating_acc" in metrics["method_info"]
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["epoch"] == 2


def test_only_rank_0_writes(two_rank_runs):
    # rank 1 wrote nothing beside rank 0's folders (its scratch folder is elsewhere)
    assert sorted(p.name for p in two_rank_runs.iterdir()) == sorted([*CASES, *(f"bn-{c}" for c in BN_CASES)])


def test_two_nodes_on_one_machine_give_the_losses_of_one_process(tmp_path, run_cli):
    args = [*COMMON, *CASES["moco"]]
    results = torchrun({"jobs": [[*args, f"hydra.run.dir={tmp_path / 'two_nodes'}"]]}, tmp_path, port=29583, nodes=2)
    for r in results:
        assert r.returncode == 0, r.stderr[-4000:]
    single = run_cli(*args, "hardware=cpu")
    assert losses(tmp_path / "two_nodes") == pytest.approx(losses(single.run_dir), rel=1e-4, abs=1e-5)


def test_a_failing_rank_ends_the_others_with_an_error_not_a_hang(tmp_path):
    job = [*COMMON, *CASES["moco"], "trainer.epochs=20", "hardware.timeout_minutes=1", f"hydra.run.dir={tmp_path / 'fails'}"]
    start = time.perf_counter()
    results = torchrun({"jobs": [job], "fail": {"rank": 1, "step": 2}, "timeout_s": 60}, tmp_path, port=29587, nodes=2, timeout=150)
    took = time.perf_counter() - start
    assert all(r.returncode != 0 for r in results), [r.returncode for r in results]
    assert took < 120, took
    assert "injected failure on rank 1" in results[1].stderr
    # the surviving rank says in one line that it lost its peers, without a traceback of ours
    # (torchrun's agent then reports the non-zero exit in its own words)
    assert "error: rank 0: lost contact with the other ranks" in results[0].stderr, results[0].stderr[-3000:]
    assert not re.search(r'File ".*/clusterbench/', results[0].stderr), results[0].stderr[-3000:]
    assert not (tmp_path / "fails" / "metrics.json").exists()


def test_impossible_ddp_settings_are_one_line_errors_on_one_process_too(run_cli):
    for override, key in (("hardware.timeout_minutes=0", "hardware.timeout_minutes"), ("hardware.grad_sync=ring", "hardware.grad_sync"),
                          ("trainer.sync_every=0", "trainer.sync_every")):
        r = run_cli(*COMMON, *CASES["moco"], "hardware=cpu", override)
        assert r.code == 2 and r.err.startswith(f"error: {key}") and r.err.count("\n") == 1, r.err
