"""The shared training loop end to end: logs, checkpoints, resume after kill -9, the NaN
guard and the wall-clock budget (DDP: tests/test_ddp.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from clusterbench.config import AugmentConfig, TrainerConfig
from clusterbench.data.synthetic import load_synthetic
from clusterbench.engine import TrainingError, train
from clusterbench.methods.base import RunContext
from clusterbench.methods.deep import Batch, DeepMethod, InputShape
from conftest import same_losses

# a few seconds of MoCo on 96 tiny images
TINY = ["method=moco", "dataset=synthetic", "dataset.num_samples=96", "hardware=cpu", "backbone=strided", "backbone.widths=[8,16]",
        "method.queue_size=64", "method.head_hidden=32", "method.feature_dim=16", "trainer.batch_size=32", "trainer.eval_every=2"]


def test_moco_logs_every_epoch_and_writes_a_safe_checkpoint(run_cli):
    r = run_cli(*TINY, "trainer.epochs=3", plots=True)
    assert r.code == 0, r.err
    lines = [json.loads(line) for line in (r.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [rec["epoch"] for rec in lines] == [1, 2, 3]
    assert all({"loss", "lr", "images_per_s", "step"} <= set(rec) for rec in lines)
    assert "acc" in lines[1] and "acc" in lines[2] and "acc" not in lines[0]  # eval_every=2, and at the end
    assert lines[2]["acc"] == pytest.approx(r.metrics()["acc"])
    state = torch.load(r.run_dir / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 3 and state["step"] == 9
    assert {"model", "optimizer", "scaler", "method", "rng", "order_gen", "view_gen", "schedule", "history"} <= set(state)
    assert any(key.startswith("queue.") for key in state["model"])  # the method's queue travels with it
    assert (r.run_dir / "curves.png").exists()
    info = r.metrics()["method_info"]
    assert info["epochs"] == 3 and info["steps"] == 9 and not info["stopped_early"]


def _run_subprocess(args: list[str], run_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "HYDRA_FULL_ERROR": ""}
    cmd = [sys.executable, "-m", "clusterbench", *args, "plots.enabled=false", f"hydra.run.dir={run_dir}"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def test_resume_after_kill_9_finishes_with_the_uninterrupted_metrics(run_cli, tmp_path):
    args = [*TINY, "trainer.epochs=6", "trainer.eval_every=0", "seed=5"]
    whole = run_cli(*args)
    assert whole.code == 0, whole.err

    run_dir = tmp_path / "killed"
    proc = _run_subprocess(args, run_dir)
    deadline = time.time() + 120
    while not (run_dir / "checkpoint.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "metrics.json").exists(), "the run finished before it could be killed; make it longer"
    epoch = torch.load(run_dir / "checkpoint.pt", weights_only=True)["epoch"]
    assert 1 <= epoch < 6

    resumed = run_cli(*args, "resume=true", run_dir=run_dir)
    assert resumed.code == 0, resumed.err
    a, b = whole.metrics(), resumed.metrics()
    assert (a["nmi"], a["acc"], a["ari"]) == (b["nmi"], b["acc"], b["ari"])
    assert resumed.losses() == same_losses(whole.losses())


def test_resume_without_a_checkpoint_starts_from_scratch(run_cli):
    r = run_cli(*TINY, "trainer.epochs=1", "resume=true")
    assert r.code == 0, r.err


class NaNAfter(DeepMethod):
    """A method whose loss turns NaN at a chosen global step."""

    def __init__(self, bad_step: int) -> None:
        super().__init__()
        self.bad_step = bad_step

    def setup(self, backbone: nn.Module, shape: InputShape) -> nn.Module:
        net = nn.Module()
        net.backbone = backbone
        return net

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        loss = self.model.backbone(batch.views[0]).pow(2).mean()
        return {"loss": loss * float("nan") if batch.step >= self.bad_step else loss}


def _context(tmp_path: Path, **trainer) -> RunContext:
    from clusterbench.backbones.mlp import MLP

    cfg = OmegaConf.merge(OmegaConf.structured(TrainerConfig), {"batch_size": 30, "eval_every": 0, **trainer})
    augment = OmegaConf.merge(OmegaConf.structured(AugmentConfig), {"name": "none", "global_scale": [1.0, 1.0], "ratio": [1.0, 1.0],
                                                                     "hflip": 0, "jitter": 0, "grayscale": 0, "blur": 0})
    return RunContext(torch.device("cpu"), 0, MLP(in_channels=1, image_size=8, name="mlp", hidden=[16]), out_dir=tmp_path,
                      progress=False, trainer=cfg, augment=augment)


def test_a_nan_loss_stops_with_epoch_and_step_and_keeps_the_last_good_checkpoint(tmp_path):
    data = load_synthetic(num_samples=120, num_classes=3)
    with pytest.raises(TrainingError, match=r"epoch 3, step 2 \(global step 10\)") as caught:
        train(NaNAfter(bad_step=9), data, _context(tmp_path, epochs=5))  # 4 steps per epoch
    assert "\n" not in str(caught.value)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 2 and all(torch.isfinite(v).all() for v in state["model"].values())


def test_the_sync_free_guard_names_the_first_bad_step_when_it_reads_the_flag_later(tmp_path):
    # 10 steps an epoch, the flag read every 4: the NaN at global step 15 (epoch 2, step 5) is
    # seen at step 8, and named as step 5; nothing after it reached a checkpoint
    data = load_synthetic(num_samples=120, num_classes=3)
    with pytest.raises(TrainingError, match=r"epoch 2, step 5 \(global step 15\)"):
        train(NaNAfter(bad_step=14), data, _context(tmp_path, epochs=5, batch_size=12, sync_every=4))
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1 and state["step"] == 10 and all(torch.isfinite(v).all() for v in state["model"].values())


def test_the_cli_reports_a_nan_loss_in_one_line(run_cli):
    r = run_cli(*TINY, "trainer.epochs=2", "trainer.lr=1e30")
    assert r.code == 2
    assert r.err.count("\n") == 1 and "error: the loss became" in r.err and "trainer.lr" in r.err
    assert (r.run_dir / "error.json").exists() and not (r.run_dir / "metrics.json").exists()


def test_the_wall_clock_budget_stops_cleanly_then_evaluates(tmp_path):
    data = load_synthetic(num_samples=120, num_classes=3)
    prediction = train(NaNAfter(bad_step=10**9), data, _context(tmp_path, epochs=10**6, max_minutes=0.02))
    assert prediction.info["stopped_early"] and prediction.assignments.shape == (120,)
    assert 0.015 <= prediction.info["train_minutes"] < 0.5


class SlowEStep(NaNAfter):
    """A method whose epoch-start pass (an E-step) takes a fixed time."""

    def __init__(self, seconds: float) -> None:
        super().__init__(bad_step=10**9)
        self.seconds = seconds

    def on_epoch_start(self, ctx):  # noqa: ANN001, ANN201
        time.sleep(self.seconds)
        return None


def test_the_budget_stops_before_an_e_step_that_would_overrun_it(tmp_path):
    data = load_synthetic(num_samples=120, num_classes=3)
    prediction = train(SlowEStep(seconds=0.8), data, _context(tmp_path, epochs=100, max_minutes=0.025))  # 1.5 s
    # epoch 1: 0.8 s of E-step, then steps; epoch 2 would start its E-step past 0.7 s and end past 1.5 s
    assert prediction.info["stopped_early"] and prediction.info["epochs"] == 1
    assert prediction.info["train_minutes"] * 60 < 1.5  # inside the budget, not a whole E-step past it


@pytest.mark.parametrize("override,key", [("trainer.batch_size=0", "trainer.batch_size"), ("trainer.batch_size=4096", "trainer.batch_size"),
                                          ("trainer.precision=fp16", "trainer.precision"), ("method.momentum=1.5", "method.momentum"),
                                          ("trainer.max_minutes=-1", "trainer.max_minutes"), ("method.split_bn=3", "method.split_bn"),
                                          ("hardware.sync_bn=true", "hardware.sync_bn"), ("method.cluster_on=pixels", "method.cluster_on")])
def test_impossible_trainer_values_are_one_line_errors(run_cli, override, key):
    r = run_cli(*TINY, "trainer.epochs=1", override)
    assert r.code == 2 and r.err.startswith(f"error: {key}") and r.err.count("\n") == 1, r.err
    assert not (r.run_dir / "metrics.json").exists()


@pytest.mark.parametrize("override,key", [("trainer.max_minutes=0", "trainer.max_minutes"), ("trainer.lr=0", "trainer.lr"),
                                          ("trainer.epochs=0", "trainer.epochs"), ("trainer.weight_decay=-1", "trainer.weight_decay")])
def test_trainer_errors_come_before_any_data_is_read(run_cli, tmp_path, override, key):
    # MNIST from a folder that does not exist: the trainer's value is named, not the missing files
    r = run_cli("method=moco", "dataset=mnist", f"dataset.root={tmp_path / 'nowhere'}", "hardware=cpu", override)
    assert r.code == 2 and r.err.startswith(f"error: {key}") and r.err.count("\n") == 1, r.err


def test_a_deep_method_on_raw_pixels_is_a_one_line_error(run_cli):
    r = run_cli("method=moco", "dataset=synthetic", "backbone=pixels")
    assert r.code == 2 and r.err.startswith("error: backbone: pixels has nothing to train") and r.err.count("\n") == 1, r.err


def test_a_checkpoint_with_per_rank_view_streams_still_resumes(tmp_path):
    # checkpoints written before views were drawn for the global batch hold a list of streams
    import shutil

    data = load_synthetic(num_samples=120, num_classes=3)
    train(NaNAfter(bad_step=10**9), data, _context(tmp_path / "new", epochs=2))
    shutil.copytree(tmp_path / "new", tmp_path / "old")
    state = torch.load(tmp_path / "old" / "checkpoint.pt", weights_only=True)
    state["view_gen"] = [state["view_gen"]]
    torch.save(state, tmp_path / "old" / "checkpoint.pt")
    losses = {}
    for name in ("new", "old"):
        ctx = _context(tmp_path / name, epochs=3)
        ctx.resume = True
        train(NaNAfter(bad_step=10**9), data, ctx)
        losses[name] = [json.loads(line)["loss"] for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    assert len(losses["new"]) == 3 and losses["old"] == same_losses(losses["new"])
