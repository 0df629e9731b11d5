"""Experiment trackers (``logger=tensorboard|mlflow|wandb``): each logs the per-epoch lines of
metrics.jsonl, the final metrics, the resolved config and the plots. Only rank 0 logs."""

from clusterbench.trackers.base import Tracker, build_tracker

__all__ = ["Tracker", "build_tracker"]
