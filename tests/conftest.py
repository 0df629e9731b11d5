"""Shared fixtures: run the CLI in-process, compose configs without running them."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest


@dataclass
class CliResult:
    code: int
    out: str
    err: str
    run_dir: Path

    def metrics(self) -> dict:
        return json.loads((self.run_dir / "metrics.json").read_text())

    def history(self) -> list[dict]:
        """metrics.jsonl: one record per epoch."""
        return [json.loads(line) for line in (self.run_dir / "metrics.jsonl").read_text().splitlines()]

    def losses(self) -> list[float]:
        """The epochs' mean losses (metrics.jsonl)."""
        return [rec["loss"] for rec in self.history()]

    def scores(self) -> tuple[float, float, float]:
        m = self.metrics()
        return m["nmi"], m["acc"], m["ari"]


def same_losses(expected: list[float]):
    """Two runs with the same weights at every step log the same epoch losses up to the last bit
    of the forward's mean: torch's vectorised CPU reductions split a sum by the buffer's alignment,
    which the allocator does not keep from run to run. The gradient of a mean does not depend on
    that bit, so the weights, assignments and scores stay exactly equal: compare those with ==,
    losses with this."""
    return pytest.approx(expected, rel=1e-6, abs=0)


@pytest.fixture
def run_cli(tmp_path, monkeypatch, capsys):
    """Run ``clusterbench ARGS`` in this process with its run folder under tmp_path."""
    from clusterbench.cli import main

    counter = {"n": 0}

    def run(*args: str, run_dir: Optional[Path] = None, plots: bool = False) -> CliResult:
        """Plots are off unless asked for: t-SNE is the slowest part of a tiny run."""
        counter["n"] += 1
        run_dir = run_dir or tmp_path / f"run{counter['n']}"
        monkeypatch.setenv("HYDRA_FULL_ERROR", "")  # main() sets it to 1; restored after the test
        extra = [] if plots or any(a.startswith("plots.") for a in args) else ["plots.enabled=false"]
        code, out, err = call_entry_point(main, ["clusterbench", *args, *extra, f"hydra.run.dir={run_dir}"], monkeypatch, capsys)
        return CliResult(code, out, err, run_dir)

    return run


def call_entry_point(main, argv: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """Run a console entry point in this process: its exit status, stdout and stderr."""
    monkeypatch.setattr(sys, "argv", argv)
    code = 0
    try:
        main()
    except SystemExit as ex:
        code = int(ex.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def run_predict(monkeypatch, capsys):
    """Run ``clusterbench-predict ARGS`` in this process (no progress bar): (status, stdout, stderr)."""
    from clusterbench.predict import main

    def run(*args: str) -> tuple[int, str, str]:
        return call_entry_point(main, ["clusterbench-predict", *args, "--no-progress"], monkeypatch, capsys)

    return run


@dataclass
class ResumeRuns:
    whole: CliResult  # trained to the end in one go
    first: CliResult  # stopped after ``split`` epochs (its checkpoint is in the shared folder)
    resumed: CliResult  # the same folder resumed to the end
    first_checkpoint: Path  # a copy of the checkpoint the resumed run started from


@pytest.fixture
def resume_runs(run_cli, tmp_path):
    """An uninterrupted run of ``total`` epochs, and one of ``split`` epochs resumed to ``total``
    in the same folder: what every method's resume test compares. Each run must succeed."""

    def runs(*args: str, split: int, total: int) -> ResumeRuns:
        whole = run_cli(*args, f"trainer.epochs={total}")
        run_dir = tmp_path / "interrupted"
        first = run_cli(*args, f"trainer.epochs={split}", run_dir=run_dir)
        assert first.code == 0, first.err
        saved = tmp_path / "first_checkpoint.pt"
        shutil.copy(run_dir / "checkpoint.pt", saved)
        resumed = run_cli(*args, f"trainer.epochs={total}", "resume=true", run_dir=run_dir)
        for r in (whole, resumed):
            assert r.code == 0, r.err
        return ResumeRuns(whole, first, resumed, saved)

    return runs


@pytest.fixture
def compose():
    """Compose the packaged config with overrides, as the CLI would (no run)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    from clusterbench.config import register_schemas

    register_schemas()

    def _compose(*overrides: str):
        with initialize_config_module(config_module="clusterbench.conf", version_base="1.3"):
            return hydra_compose(config_name="config", overrides=list(overrides), return_hydra_config=False)

    return _compose


@pytest.fixture
def clock_budgets(monkeypatch):
    """The budget (seconds, or None) of every training clock a run starts, in order."""
    from clusterbench import engine

    budgets: list = []
    original = engine.Clock.__init__

    def record(self, budget_s, *args, **kwargs):
        budgets.append(budget_s)
        original(self, budget_s, *args, **kwargs)

    monkeypatch.setattr(engine.Clock, "__init__", record)
    return budgets
