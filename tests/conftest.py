"""Shared fixtures: run the CLI in-process, compose configs without running them."""

from __future__ import annotations

import json
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
        monkeypatch.setattr(sys, "argv", ["clusterbench", *args, *extra, f"hydra.run.dir={run_dir}"])
        code = 0
        try:
            main()
        except SystemExit as ex:
            code = int(ex.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err, run_dir)

    return run


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
