"""``logger=tensorboard``: event files in the run folder (``<run>/tensorboard``), through
torch's ``SummaryWriter``: scalars per epoch, the final scores, the config as text, the plots
as images. ``tensorboard --logdir outputs`` shows every run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from clusterbench.trackers.base import Tracker, numeric, require


class TensorBoardTracker(Tracker):
    name = "tensorboard"

    def __init__(self, log_dir: Optional[str] = None) -> None:
        require("tensorboard", "tensorboard")
        self.log_dir = log_dir
        self.writer: Any = None

    def start(self, config: Mapping[str, Any], run_dir: Path, run_name: str) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(self.log_dir) / run_name if self.log_dir else run_dir / "tensorboard"))
        self.writer.add_text("config", "```\n" + json.dumps(config, indent=1, default=str) + "\n```", 0)

    def log_epoch(self, record: Mapping[str, Any], step: int) -> None:
        stage = record.get("stage")
        for key, value in numeric(record).items():
            self.writer.add_scalar(f"{stage}/{key}" if stage else f"train/{key}", value, step)

    def log_final(self, metrics: Mapping[str, Any]) -> None:
        for key, value in numeric(metrics).items():
            self.writer.add_scalar(f"final/{key}", value, 0)

    def log_images(self, paths: Sequence[Path]) -> None:
        import numpy as np
        from PIL import Image

        for path in paths:
            self.writer.add_image(f"plots/{path.stem}", np.asarray(Image.open(path).convert("RGB")), 0, dataformats="HWC")

    def close(self, failed: bool = False) -> None:
        if self.writer is not None:
            self.writer.close()
