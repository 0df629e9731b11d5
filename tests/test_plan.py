"""The run-start block (clusterbench.plan) and the measured whole-run estimate (clusterbench.eta)."""

from __future__ import annotations

import json
import logging

import pytest

from clusterbench import eta
from clusterbench.engine import clock_text
from clusterbench.eta import RunEstimate, duration
from clusterbench.plan import format_plan, recipe_file, recipe_source

TINY = ["dataset=synthetic", "dataset.num_samples=64", "hardware=cpu", "hardware.threads=1", "trainer.batch_size=16", "trainer.epochs=6",
        "trainer.eval_every=0", "backbone=strided", "backbone.widths=[8,16]", "method.queue_size=32", "method.head_hidden=16", "method.feature_dim=8"]


def test_the_plan_is_printed_before_training_and_recorded(run_cli):
    run = run_cli("method=moco", *TINY)
    assert run.code == 0, run.err
    plan = json.loads((run.run_dir / "metrics.json").read_text())["plan"]
    assert plan["recipe"] is None and plan["method"] == "moco" and plan["dataset"] == "synthetic" and plan["device"] == "cpu"
    assert plan["epochs"] == 6 and plan["batch_size"] == 16 and plan["precision"] == "fp32" and plan["backbone"].startswith("strided")
    assert plan["views"].endswith("2 × 8 px") and plan["optimizer"].startswith("sgd, lr 0.06")
    # 4 steps an epoch × 6 epochs: the estimate comes after the 21st step, from the 20 measured after the first
    estimate = plan["estimate"]
    assert estimate["measured_steps"] == 20 and estimate["seconds_per_step"] > 0
    assert estimate["whole_run_s"] == pytest.approx(24 * estimate["seconds_per_step"] + 6 * estimate["epoch_start_s"])
    text = (run.run_dir / "clusterbench.log").read_text()  # the console's log lines, as Hydra's job log keeps them
    block = text.index("run plan:")
    assert "recipe: none for moco × synthetic: the generic defaults" in text and block < text.index("epoch 1:")  # before training
    assert "estimated run on cpu:" in text


def test_a_recipe_is_named_with_its_source():
    assert recipe_file("moco", "digits") == "method_dataset/moco_digits" and recipe_file("moco", "synthetic") is None
    source = recipe_source("method_dataset/moco_digits")
    assert source and not source.startswith("#") and "@package" not in source
    block = format_plan({"method": "moco", "dataset": "digits", "device": "cpu", "recipe": "method_dataset/moco_digits", "source": source})
    assert block.splitlines()[1] == f"  recipe: method_dataset/moco_digits.yaml — {source}" and block.endswith("device: cpu")


def _fake_clock(monkeypatch, step_s: float):
    now = {"t": 0.0}
    monkeypatch.setattr(eta.time, "perf_counter", lambda: now["t"])

    def tick() -> None:
        now["t"] += step_s
    return tick


def test_the_estimate_is_computed_from_measured_steps(monkeypatch, caplog):
    tick = _fake_clock(monkeypatch, 0.5)
    est = RunEstimate(epochs=10, steps_per_epoch=100, device="cpu")
    est.epoch_started(2.0)
    for i in range(21):  # the first step only starts the clock
        tick()
        assert est.result is None
        est.step_done(epochs_left=9, steps_left_this_epoch=100 - i - 1)
    assert est.result == {"measured_steps": 20, "seconds_per_step": 0.5, "epoch_start_s": 2.0, "whole_run_s": 10 * 100 * 0.5 + 10 * 2.0,
                          "remaining_s": (9 * 100 + 79) * 0.5 + 9 * 2.0}
    assert "warning" not in caplog.text.lower()


def test_a_cpu_run_over_an_hour_warns_unless_a_shorter_budget_stops_it(monkeypatch, caplog):
    tick = _fake_clock(monkeypatch, 2.0)
    for budget, warns in ((None, True), (600.0, False)):
        caplog.clear()
        est = RunEstimate(epochs=100, steps_per_epoch=200, device="cpu", budget_s=budget)
        for _ in range(21):
            tick()
            est.step_done(99, 150)
        assert ("trainer.max_minutes" in caplog.text and any(r.levelno == logging.WARNING for r in caplog.records)) == warns
        if budget:
            assert est.result["budget_epochs"] == pytest.approx(600 / 400) and "≈ 1.5 epochs" in caplog.text
    caplog.clear()
    est = RunEstimate(epochs=100, steps_per_epoch=200, device="cuda")  # the same hours on a GPU: said, not warned
    for _ in range(21):
        tick()
        est.step_done(99, 150)
    assert not any(r.levelno == logging.WARNING for r in caplog.records) and "estimated run on cuda" in caplog.text


def test_durations_and_the_budget_clock_read_well():
    assert [duration(s) for s in (4, 600, 3 * 3600 + 300, 50 * 3600)] == ["4 s", "10 min", "3 h 05 min", "2 d 2 h"]
    assert [clock_text(s) for s in (-3, 65, 3725)] == ["0:00", "1:05", "1:02:05"]
