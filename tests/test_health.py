"""Training-health warnings: each sign by hand, triggered on purpose in a run, and silent on a
recipe that works."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from clusterbench.health import HealthMonitor, best_beats_final, cluster_size_shares, effective_clusters, mean_pairwise_cosine


def test_the_measures_by_hand():
    assert effective_clusters(np.array([0] * 5 + [1] * 5)) == pytest.approx(2.0)
    assert effective_clusters(np.array([3] * 10)) == pytest.approx(1.0)
    sizes = [6, 2, 2]  # entropy of (0.6, 0.2, 0.2)
    want = math.exp(-(0.6 * math.log(0.6) + 2 * 0.2 * math.log(0.2)))
    assert effective_clusters(np.repeat([0, 1, 2], sizes)) == pytest.approx(want)
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])  # pair cosines 0, 1/√2, 1/√2
    assert mean_pairwise_cosine(x) == pytest.approx((0 + 2 / math.sqrt(2)) / 3, rel=1e-6)
    assert cluster_size_shares(torch.tensor([0, 0, 0, 1]), 4) == (0.5, 0.75)


def signs(monitor: HealthMonitor) -> list[str]:
    return [w["sign"] for w in monitor.warnings]


def test_each_sign_fires_once_on_its_own_evidence_and_not_otherwise():
    m = HealthMonitor(k=10, chance_loss=math.log(11))
    for epoch in range(1, 5):  # four epochs at chance: not yet
        m.on_epoch({"epoch": epoch, "loss": math.log(11) * 1.005})
    assert signs(m) == []
    m.on_epoch({"epoch": 5, "loss": math.log(11)})
    assert signs(m) == ["flat_loss"] and m.warnings[0]["epoch"] == 5 and m.warnings[0]["hint"]
    m.on_epoch({"epoch": 6, "loss": math.log(11)})  # once per sign
    assert signs(m) == ["flat_loss"]

    healthy = HealthMonitor(k=10, chance_loss=math.log(11))
    for epoch, loss in enumerate([2.4, 2.3, 2.2, 2.1, 2.0, 1.9], 1):  # learning
        healthy.on_epoch({"epoch": epoch, "loss": loss, "effective_clusters": 9.5, "feature_cosine": 0.7, "estep_empty_share": 0.0,
                          "estep_largest_share": 0.2, "experts_used": 10.0, "code_used": 9.0})
    assert signs(healthy) == []

    for record, sign in (({"effective_clusters": 4.0}, "collapse"), ({"effective_clusters": 9.0, "feature_cosine": 0.97}, "collapse"),
                         ({"estep_empty_share": 0.2}, "estep_clusters"), ({"estep_largest_share": 0.6}, "estep_clusters"),
                         ({"experts_used": 1.0}, "unused"), ({"code_used": 2.2}, "unused")):
        m = HealthMonitor(k=10)
        m.on_epoch({"epoch": 3, **record})
        assert signs(m) == [sign], record
    m = HealthMonitor(k=2)  # two clusters, both used: fine
    m.on_epoch({"epoch": 1, "experts_used": 2.0})
    assert signs(m) == []


def test_best_beats_final_by_more_than_five_points():
    history = [{"epoch": 10, "acc": 0.93}, {"epoch": 20, "acc": 0.80}, {"epoch": 30, "loss": 1.0}]
    w = best_beats_final(history, 0.85)
    assert w["sign"] == "best_beats_final" and w["epoch"] == 10 and "93.0%" in w["detail"]
    assert best_beats_final(history, 0.89) is None and best_beats_final([], 0.5) is None


TINY = ["dataset=synthetic", "dataset.num_samples=96", "hardware=cpu", "trainer.batch_size=32", "trainer.eval_every=1",
        "backbone=strided", "backbone.widths=[8,16]"]


def test_a_swav_stuck_at_log_k_is_named_in_the_run(run_cli):
    # τ = 1000: every prototype scores alike, the swapped prediction sits at log K whatever happens
    r = run_cli(*TINY, "method=swav", "method.temperature=1000", "method.num_prototypes=8", "method.queue_length=0", "trainer.epochs=6",
                "method.feature_dim=16", "method.head_hidden=32")
    assert r.code == 0, r.err
    health = r.metrics()["health"]
    assert "flat_loss" in [w["sign"] for w in health], health


def test_the_default_digits_recipe_raises_no_warning(run_cli):
    r = run_cli("trainer.epochs=20", "recipe_cluster.epochs=10", "hardware.threads=1")
    assert r.code == 0, r.err
    m = r.metrics()
    assert m["health"] == [], m["health"]
    assert all("effective_clusters" in rec for rec in r.history() if "acc" in rec)
