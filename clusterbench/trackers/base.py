"""The tracker interface and its construction from ``logger=...``.

A tracker sees what the run writes anyway — each metrics.jsonl line (``log_epoch``), the final
metrics.json scores (``log_final``), the resolved config (``start``), the plots (``log_images``)
— so no tracker can show a number the run folder lacks. ``logger=none`` (the default) is the
base class itself: every call does nothing.
"""

from __future__ import annotations

import importlib
import numbers
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from clusterbench.errors import ConfigError

EXTRAS = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}  # logger → pip extra


def numeric(record: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numbers of a record (booleans and strings dropped), keys prefixed."""
    return {f"{prefix}{key}": float(v) for key, v in record.items() if isinstance(v, numbers.Real) and not isinstance(v, bool)}


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested config as ``a.b.c`` → value strings (the trackers' flat parameter tables)."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = str(value)
    return out


class Tracker:
    """``logger=none``: logs nothing. Subclasses log to a tracker."""

    name = "none"

    def start(self, config: Mapping[str, Any], run_dir: Path, run_name: str) -> None:
        """Open the tracker's run and record the resolved config."""

    def log_epoch(self, record: Mapping[str, Any], step: int) -> None:
        """One metrics.jsonl line; ``step`` counts the run's lines from 1 (across SCAN's steps)."""

    def log_final(self, metrics: Mapping[str, Any]) -> None:
        """The final scores (metrics.json's numbers)."""

    def log_images(self, paths: Sequence[Path]) -> None:
        """The run's plots."""

    def close(self, failed: bool = False) -> None:
        """Finish the tracker's run (marked failed when the run stopped on an error)."""


def require(module: str, logger: str) -> Any:
    """Import a tracker's package, or a one-line error naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError("logger", f"logger={logger} needs the {module} package: pip install 'clusterbench[{EXTRAS[logger]}]'") from None


def build_tracker(cfg: Optional[Mapping[str, Any]]) -> Tracker:
    """The tracker ``logger=...`` configures (its package imported now, before any training)."""
    if cfg is None or cfg.get("name", "none") == "none":
        return Tracker()
    name = str(cfg["name"])
    if name == "tensorboard":
        from clusterbench.trackers.tensorboard import TensorBoardTracker

        return TensorBoardTracker(**{k: v for k, v in cfg.items() if k != "name"})
    if name == "mlflow":
        from clusterbench.trackers.mlflow import MLflowTracker

        return MLflowTracker(**{k: v for k, v in cfg.items() if k != "name"})
    if name == "wandb":
        from clusterbench.trackers.wandb import WandbTracker

        return WandbTracker(**{k: v for k, v in cfg.items() if k != "name"})
    raise ConfigError("logger", f"'{name}' is not a tracker; use none, tensorboard, mlflow or wandb")
