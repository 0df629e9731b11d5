"""SCAN (cluster=scan): its losses by hand, the neighbour mining against brute force, the linear
cluster state, and the stage end to end — in the run, on a finished run's folder, resumed after
a kill inside its second step, and kept apart in the report."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clusterbench.cluster.neighbors import nearest_neighbors
from clusterbench.cluster.state import assign, linear_state
from clusterbench.methods.losses import confident_cross_entropy, scan_loss
from conftest import same_losses

MOCO = ["dataset=synthetic", "dataset.num_samples=96", "hardware=cpu", "trainer.batch_size=32", "trainer.epochs=2", "trainer.eval_every=0",
        "backbone=strided", "backbone.widths=[8,16]", "method=moco", "method.queue_size=64", "method.head_hidden=32", "method.feature_dim=16"]
SCAN = ["cluster=scan", "cluster.num_neighbors=5", "cluster.num_heads=2", "cluster.epochs=2", "cluster.batch_size=16", "cluster.lr=1e-3",
        "cluster.selflabel_epochs=3", "cluster.selflabel_batch_size=32", "cluster.threshold=0.2"]


# --- losses --------------------------------------------------------------------------------


def test_scan_loss_by_hand():
    # two anchors over K = 2; logits chosen so that the softmaxes are simple numbers
    anchors = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])  # p = (3/4, 1/4), (1/2, 1/2)
    neighbors = torch.tensor([[math.log(3.0), 0.0], [0.0, math.log(3.0)]])  # q = (3/4, 1/4), (1/4, 3/4)
    total, consistency, entropy = scan_loss(anchors, neighbors, entropy_weight=5.0)
    dots = [3 / 4 * 3 / 4 + 1 / 4 * 1 / 4, 1 / 2 * 1 / 4 + 1 / 2 * 3 / 4]  # ⟨p, q⟩ = 5/8, 1/2
    mean = [(3 / 4 + 1 / 2) / 2, (1 / 4 + 1 / 2) / 2]  # p̄ = (5/8, 3/8)
    want_consistency = -(math.log(dots[0]) + math.log(dots[1])) / 2
    want_entropy = -sum(m * math.log(m) for m in mean)
    assert consistency.item() == pytest.approx(want_consistency, rel=1e-6)
    assert entropy.item() == pytest.approx(want_entropy, rel=1e-6)
    assert total.item() == pytest.approx(want_consistency - 5.0 * want_entropy, rel=1e-6)


def test_scan_loss_matches_a_direct_computation_and_clamps_like_the_authors():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    p, q = a.softmax(1), b.softmax(1)
    direct = -torch.log((p * q).sum(1)).mean() - 2.0 * -(p.mean(0) * p.mean(0).log()).sum()
    assert scan_loss(a, b, 2.0)[0].item() == pytest.approx(direct.item(), rel=1e-5)
    # disagreeing certainties: ⟨p, q⟩ underflows to 0 and the log is clamped at −100 (BCELoss)
    far = torch.tensor([[200.0, 0.0]]), torch.tensor([[0.0, 200.0]])
    assert scan_loss(*far, 0.0)[1].item() == pytest.approx(100.0)


def test_self_label_threshold_and_class_balance_by_hand():
    # weak-view probabilities (via logits) for 5 images over K = 3; threshold 0.9:
    # images 0, 1 confident in class 0, image 2 in class 2, 3 and 4 not confident
    big = 10.0  # softmax of (10, 0, 0) = 0.99991
    weak = torch.tensor([[big, 0, 0], [big, 0, 0], [0, 0, big], [1.0, 0, 0], [0, 1.0, 0]])
    strong = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 2.0], [5.0, 0, 0], [0, 5.0, 0]])
    loss, count = confident_cross_entropy(weak, strong, threshold=0.9, balance=False)
    ce = [-F.log_softmax(strong[i], 0)[c].item() for i, c in ((0, 0), (1, 0), (2, 2))]
    assert int(count) == 3
    assert loss.item() == pytest.approx(sum(ce) / 3, rel=1e-6)
    # balanced: n = 3 confident, class 0 holds 2 → weight 3/2, class 2 holds 1 → weight 3;
    # torch's weighted mean divides by the weights' sum
    loss, _ = confident_cross_entropy(weak, strong, threshold=0.9, balance=True)
    w = [1.5, 1.5, 3.0]
    assert loss.item() == pytest.approx(sum(wi * c for wi, c in zip(w, ce)) / sum(w), rel=1e-6)
    # nobody confident: a zero loss that still back-propagates (an idle step, not a crash)
    strong.requires_grad_(True)
    loss, count = confident_cross_entropy(weak, strong, threshold=0.99999, balance=True)
    assert int(count) == 0 and loss.item() == 0.0
    loss.backward()
    assert strong.grad is not None and torch.all(strong.grad == 0)


# --- neighbours and the linear state ---------------------------------------------------------


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_neighbors_match_brute_force(backend, monkeypatch):
    from clusterbench.cluster import neighbors as N

    monkeypatch.setattr(N, "CHUNK", 7)  # several chunks in the torch back-end
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 6, generator=g)
    found = nearest_neighbors(x, 4, backend)
    assert found.shape == (40, 5) and torch.equal(found[:, 0], torch.arange(40))
    cos = F.normalize(x, dim=1) @ F.normalize(x, dim=1).T
    cos.fill_diagonal_(-2.0)
    for i in range(40):  # each row: the 4 most similar others, in falling order
        want = [int(j) for j in np.argsort(-cos[i].numpy(), kind="stable")[:4]]
        assert found[i, 1:].tolist() == want


def test_neighbors_put_an_exact_duplicate_second_not_first():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.1, 1.0]])
    found = nearest_neighbors(x, 2, "torch")
    assert found[0].tolist()[:2] == [0, 1] and found[1].tolist()[:2] == [1, 0]


def test_linear_state_assigns_by_the_heads_argmax():
    weight = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    bias = torch.tensor([0.0, 0.5, 0.0])
    state = linear_state(weight, bias)
    x = torch.tensor([[2.0, 0.0], [0.0, 2.0], [-3.0, -3.0], [1.0, 1.0]])
    ids, confidence = assign(state, x)
    assert ids.tolist() == [0, 1, 2, 1]  # (1, 1): logits 1, 1.5, −2
    logits = x @ weight.T + bias
    assert np.allclose(confidence, logits.softmax(1).max(1).values.numpy(), atol=1e-6)


# --- the stage end to end ---------------------------------------------------------------------


def test_scan_in_the_run_its_steps_and_their_records(run_cli):
    r = run_cli(*MOCO, *SCAN)
    assert r.code == 0, r.err
    m = r.metrics()
    assert m["cluster"]["name"] == "scan" and m["cluster"]["num_neighbors"] == 5 and "cluster=scan" in m["variant"]
    scan = m["method_info"]["scan"]
    for key in ("pretext_acc", "scan_acc", "selflabel_acc", "scan_head", "scan_head_loss", "neighbors_s"):
        assert key in scan, key
    assert scan["scan_epochs"] == 2 and scan["selflabel_epochs"] == 3
    assert scan["selflabel_acc"] == m["acc"]  # the final clusters are the self-labelled head's
    stages = [rec.get("stage") for rec in r.history()]
    assert stages == [None, None, "scan", "scan", "selflabel", "selflabel", "selflabel"]
    for name in ("checkpoint.pt", "checkpoint_scan.pt", "checkpoint_selflabel.pt", "clusters.npz", "model.pt"):
        assert (r.run_dir / name).exists(), name
    assert {"scan_step", "selflabel_step", "cluster_stage"} <= set(m["timings"])
    clusters = np.load(r.run_dir / "clusters.npz")
    assert str(clusters["kind"]) == "linear"


def test_scan_on_a_finished_run_equals_scan_in_the_run_and_predicts(run_cli, run_predict, monkeypatch, capsys, tmp_path):
    from conftest import call_entry_point

    from clusterbench.recluster import main as recluster_main

    staged, plain = run_cli(*MOCO, *SCAN), run_cli(*MOCO)
    assert staged.code == 0 and plain.code == 0, staged.err + plain.err
    code, out, err = call_entry_point(recluster_main, ["clusterbench-recluster", str(plain.run_dir), *SCAN, "--out", str(tmp_path / "again"),
                                                       "--no-progress"], monkeypatch, capsys)
    assert code == 0, err
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert (again["nmi"], again["acc"], again["ari"]) == staged.scores()
    assert again["cluster"] == staged.metrics()["cluster"] and again["method_info"]["scan"]["scan_head"] == staged.metrics()["method_info"]["scan"]["scan_head"]
    assert (tmp_path / "again" / "checkpoint_selflabel.pt").exists()
    # the folder's own model.pt (the fine-tuned network) and linear state give the same clusters back
    code, _, err = run_predict(str(tmp_path / "again"), "--out", str(tmp_path / "pred"))
    assert code == 0, err
    a = (tmp_path / "again" / "assignments.csv").read_text().splitlines()
    b = (tmp_path / "pred" / "assignments.csv").read_text().splitlines()
    assert [line.split(",")[2] for line in a[1:]] == [line.split(",")[2] for line in b[1:]]


def test_a_run_killed_inside_self_labelling_resumes_to_the_same_result(run_cli, monkeypatch, tmp_path):
    from clusterbench.methods import scan as S

    whole = run_cli(*MOCO, *SCAN)
    assert whole.code == 0, whole.err

    class Killed(BaseException):  # stands for the process dying: nothing catches it
        pass

    original = S.SelfLabel.training_step

    def dies_in_the_second_epoch(self, batch):
        if batch.epoch == 1:
            raise Killed()
        return original(self, batch)

    run_dir = tmp_path / "killed"
    monkeypatch.setattr(S.SelfLabel, "training_step", dies_in_the_second_epoch)
    with pytest.raises(Killed):
        run_cli(*MOCO, *SCAN, run_dir=run_dir)
    monkeypatch.setattr(S.SelfLabel, "training_step", original)
    assert not (run_dir / "metrics.json").exists()
    assert torch.load(run_dir / "checkpoint_selflabel.pt", weights_only=True)["epoch"] == 1
    assert torch.load(run_dir / "checkpoint_scan.pt", weights_only=True)["finished"]
    shutil.copy(run_dir / "checkpoint_scan.pt", tmp_path / "scan_before.pt")

    resumed = run_cli(*MOCO, *SCAN, "resume=true", run_dir=run_dir)
    assert resumed.code == 0, resumed.err
    assert resumed.scores() == whole.scores()
    assert resumed.losses() == same_losses(whole.losses())
    # the finished SCAN step was not trained again
    assert (tmp_path / "scan_before.pt").read_bytes() == (run_dir / "checkpoint_scan.pt").read_bytes()


@pytest.mark.parametrize("args, words", [
    ((*MOCO, "cluster=scan", "cluster.num_neighbors=200"), "cluster.num_neighbors"),
    ((*MOCO, "cluster=scan", "cluster.threshold=1.5"), "cluster.threshold"),
    ((*MOCO, "cluster=scan", "cluster.selflabel_share=1"), "cluster.selflabel_share"),
    (("method=kmeans", "dataset=synthetic", "dataset.num_samples=96", "cluster=scan"), "cluster=scan follows a trained method"),
])
def test_impossible_scan_settings_are_one_line_errors(run_cli, args, words):
    r = run_cli(*args)
    assert r.code == 2 and words in r.err and r.err.count("\n") == 1, r.err


def test_scan_under_a_budget_takes_a_third_unless_told(run_cli, clock_budgets):
    r = run_cli(*MOCO, *SCAN, "trainer.max_minutes=3")
    assert r.code == 0, r.err
    # training 2 of 3 minutes; SCAN's step half of the kept minute, self-labelling the other half
    assert clock_budgets == [120.0, 30.0, 30.0] and r.metrics()["cluster"]["minutes"] == 1.0


def test_a_recipe_stage_is_said_recorded_and_yields_to_the_command_line(compose, run_cli):
    cfg = compose()  # the default run: MoCo on digits, its recipe reads out with SCAN
    assert cfg.cluster is None and cfg.recipe_cluster.option == "scan"
    from clusterbench.recipes import recipe_stage

    node = recipe_stage(cfg.recipe_cluster)
    assert node.name == "scan" and node.lr == pytest.approx(1e-3) and node.num_neighbors == 20  # recipe over the stage's defaults
    assert compose("cluster=kmeans").cluster.name == "kmeans"
    bad = run_cli(*MOCO, "+recipe_cluster.option=tsne")
    assert bad.code == 2 and "recipe_cluster.option" in bad.err


def test_the_report_keeps_a_scan_row_apart(tmp_path):
    from fabricate import fabricate_run

    from clusterbench.report.runs import load_runs
    from clusterbench.report.table import aggregate, load_references

    fabricate_run(tmp_path / "a", "moco", "cifar10", 0, {"nmi": 0.5, "acc": 0.6, "ari": 0.4})
    fabricate_run(tmp_path / "b", "moco", "cifar10", 0, {"nmi": 0.8, "acc": 0.9, "ari": 0.7}, overrides=["cluster=scan"])
    report = aggregate(load_runs([tmp_path]), references=load_references())
    assert set(report.cells) == {("moco", "cifar10"), ("moco (cluster=scan)", "cifar10")}
    assert ("moco (cluster=scan)", "cifar10") not in report.published
