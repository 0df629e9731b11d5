"""The small base every clustering method subclasses.

A method gets the dataset and a run context, and returns one cluster id per evaluated
image. It never sees the labels: ``fit_predict`` receives them inside ``ImageDataset`` only
because the images travel there, and the run checks nothing of them reaches the method's
result but the ids.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch
from torch import nn

from clusterbench.data.dataset import ImageDataset
from clusterbench.distributed import DistInfo
from clusterbench.errors import ConfigError


@dataclass
class RunContext:
    """What a method may use besides the images: where to run, the seed, the backbone, and
    for trained methods the loop's settings (``trainer``), the view recipe and the ranks."""

    device: torch.device
    seed: int
    backbone: nn.Module
    out_dir: Optional[Path] = None
    progress: bool = True
    trainer: Any = None  # the trainer config node (clusterbench.config.TrainerConfig)
    augment: Any = None  # the augmentation recipe (clusterbench.config.AugmentConfig)
    resume: bool = False
    sync_bn: bool = False  # under DDP: convert BatchNorm layers to SyncBatchNorm
    grad_sync: str = "ddp"  # under DDP: how gradients are averaged (clusterbench.distributed.wrap_step)
    placement: str = "auto"  # where the training images live (clusterbench.data.placement)
    dist: DistInfo = field(default_factory=DistInfo)
    cluster: Any = None  # the clustering stage after training (clusterbench.stages.Stage); None: the method's own read-out
    # A run trains in steps when its clustering stage trains too (SCAN): each step is one
    # ``engine.train`` call with its own checkpoint file and history lines, and keeps a
    # checkpoint of its final state (``finished``) so a resume goes on with the next step.
    step: Optional[str] = None  # the step's name (recorded in its metrics.jsonl lines); None: the method's own training
    checkpoint_name: str = "checkpoint.pt"
    history_before: list = field(default_factory=list)  # metrics.jsonl lines of the steps before this one
    keep_final: bool = False  # also checkpoint the final state (after a budget stop too), marked finished
    probes: Any = None  # kNN / linear probes scored at every evaluation (clusterbench.probes.ProbeProtocol)
    tracker: Any = None  # the experiment tracker each metrics.jsonl line also goes to (clusterbench.trackers), rank 0


@dataclass
class Prediction:
    """A method's answer: cluster ids for ``data.images`` in order, and how it got there."""

    assignments: np.ndarray  # N int64
    num_clusters: int
    timings: dict[str, float] = field(default_factory=dict)  # wall seconds per phase
    info: dict[str, Any] = field(default_factory=dict)  # method-specific facts (inertia, ...)
    embeddings: Optional[np.ndarray] = None  # N×D features the clusters were found in (for plots, features.npy)
    clusters: Optional[dict[str, np.ndarray]] = None  # the fitted clustering (clusterbench.cluster.state): clusters.npz
    confidence: Optional[np.ndarray] = None  # N: each assignment's confidence, where the clustering has one
    preprocess: dict[str, Any] = field(default_factory=dict)  # how images become network input (mean, std)
    history: list = field(default_factory=list)  # the training's metrics.jsonl lines (trained methods)
    samples: Optional[Any] = None  # images a generative method made (DeepMethod.samples): samples.png


class Timer:
    """Wall seconds per named phase, accumulated into a dict."""

    def __init__(self, into: dict[str, float]) -> None:
        self.into = into

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.into[phase] = self.into.get(phase, 0.0) + time.perf_counter() - start


class Method(ABC):
    """A clustering method; ``num_clusters=None`` means the dataset's class count."""

    def __init__(self, num_clusters: Optional[int] = None) -> None:
        if num_clusters is not None and num_clusters < 2:
            raise ConfigError("method.num_clusters", f"{num_clusters} is fewer than 2 clusters; use 2 or more (or null for the class count)")
        self.num_clusters = num_clusters

    @property
    def name(self) -> str:
        return type(self).__name__

    def clusters_for(self, data: ImageDataset) -> int:
        if self.num_clusters is None and not data.has_labels:
            raise ConfigError("method.num_clusters", f"{data.name} has no labels to count classes from; set method.num_clusters=K")
        k = self.num_clusters if self.num_clusters is not None else data.num_classes
        if k > len(data.train_images()):
            raise ConfigError("method.num_clusters", f"{k} clusters but only {len(data.train_images())} images; lower it or raise dataset.limit")
        return k

    @abstractmethod
    def fit_predict(self, data: ImageDataset, ctx: RunContext) -> Prediction:
        """Fit on ``data.train_images()`` and return a cluster id for each of ``data.images``."""


def require_positive(key: str, value: Optional[int | float], allow_none: bool = False) -> None:
    """Reject a count or size that must be ≥ 1 (or a positive real), naming the key."""
    if value is None and allow_none:
        return
    if value is None or value <= 0:
        raise ConfigError(key, f"{value} is not allowed; it must be positive")
