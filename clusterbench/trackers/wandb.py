"""``logger=wandb``: Weights & Biases, offline (files under ``<run>/wandb``, ``wandb sync`` uploads
them later) unless ``logger.project`` is set, then online to that project. The config, each
epoch's numbers at its step, the final scores in the summary, the plots as images."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from clusterbench.trackers.base import Tracker, numeric, require


class WandbTracker(Tracker):
    name = "wandb"

    def __init__(self, project: Optional[str] = None, entity: Optional[str] = None) -> None:
        self.wandb = require("wandb", "wandb")
        self.project, self.entity = project, entity
        self.run: Any = None

    def start(self, config: Mapping[str, Any], run_dir: Path, run_name: str) -> None:
        self.run = self.wandb.init(project=self.project or "clusterbench", entity=self.entity, name=run_name, dir=str(run_dir),
                                   config=dict(config), mode="online" if self.project else "offline")

    def log_epoch(self, record: Mapping[str, Any], step: int) -> None:
        stage = record.get("stage")
        self.run.log(numeric(record, f"{stage}/" if stage else ""), step=step)

    def log_final(self, metrics: Mapping[str, Any]) -> None:
        self.run.summary.update(numeric(metrics, "final/"))

    def log_images(self, paths: Sequence[Path]) -> None:
        self.run.log({f"plots/{p.stem}": self.wandb.Image(str(p)) for p in paths})

    def close(self, failed: bool = False) -> None:
        if self.run is not None:
            self.run.finish(exit_code=1 if failed else 0)
            self.run = None
