"""Sweep bookkeeping: after a multirun, find the jobs that failed so the command can say so.

A Hydra callback, because ``on_multirun_end`` runs in the launching process whatever the
launcher (basic, joblib, submitit), while the jobs themselves may run elsewhere. Failed jobs
are the folders with an ``error.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class SweepReport(Callback):
    failed: ClassVar[list[str]] = []  # read by the CLI once the sweep returns

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        for error_file in sorted(sweep_dir.glob("**/error.json")):
            try:
                overrides = json.loads(error_file.read_text()).get("overrides", [])
            except (OSError, json.JSONDecodeError):
                overrides = []
            SweepReport.failed.append(",".join(overrides) or str(error_file.parent))
