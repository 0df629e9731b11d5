"""Typed schemas for the Hydra config.

The values users see live in the YAML files under ``conf/``; these dataclasses give them
types, so a misspelt key or a value of the wrong type fails when Hydra composes the config,
before any data is read. Each group file pulls its schema in with
``defaults: [/schema/<group>/<name>@_here_, _self_]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


class Split(str, Enum):
    all = "all"
    train = "train"
    test = "test"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class KMeansBackend(str, Enum):
    faiss = "faiss"
    torch = "torch"


class CovarianceType(str, Enum):
    full = "full"
    tied = "tied"
    diag = "diag"
    spherical = "spherical"


class Cifar100Targets(str, Enum):
    coarse = "coarse"
    fine = "fine"


# --- dataset -------------------------------------------------------------------------


@dataclass
class DatasetConfig:
    _target_: str = MISSING  # the loader function
    name: str = MISSING
    root: str = MISSING
    split: Split = Split.all
    limit: Optional[int] = None  # class-stratified subset of this many images
    download: bool = False


@dataclass
class Cifar100Config(DatasetConfig):
    targets: Cifar100Targets = Cifar100Targets.coarse


@dataclass
class STL10Config(DatasetConfig):
    unlabeled: bool = False


@dataclass
class ImageNetDogConfig(DatasetConfig):
    image_size: int = 96


@dataclass
class SyntheticConfig(DatasetConfig):
    num_samples: int = 600
    num_classes: int = 3
    image_size: int = 8
    channels: int = 1
    noise: float = 0.15
    data_seed: int = 0


# --- method --------------------------------------------------------------------------


@dataclass
class MethodConfig:
    _target_: str = MISSING
    num_clusters: Optional[int] = None  # null: the dataset's class count


@dataclass
class KMeansMethodConfig(MethodConfig):
    pca_dim: Optional[int] = None
    backend: KMeansBackend = KMeansBackend.faiss
    niter: int = 50
    restarts: int = 10
    spherical: bool = False
    max_points_per_centroid: Optional[int] = None  # null: train on every point


@dataclass
class GMMMethodConfig(MethodConfig):
    pca_dim: Optional[int] = None
    covariance_type: CovarianceType = CovarianceType.full
    restarts: int = 1
    max_iter: int = 100
    reg_covar: float = 1e-6


# --- backbone / hardware / top level -------------------------------------------------


@dataclass
class BackboneConfig:
    _target_: str = MISSING
    name: str = MISSING


@dataclass
class HardwareConfig:
    device: Device = Device.auto  # auto: cuda when available
    threads: Optional[int] = None  # torch intra-op threads; null keeps torch's default


@dataclass
class PlotsConfig:
    enabled: bool = True
    embedding: bool = True  # t-SNE map of the final embeddings (by cluster and by label)
    embedding_points: int = 1000  # subsample: t-SNE cost grows with N²
    confusion: bool = True
    curves: bool = True  # training curves, for methods that log epochs


@dataclass
class RunConfig:
    method: Any = MISSING
    dataset: Any = MISSING
    backbone: Any = MISSING
    hardware: HardwareConfig = MISSING
    seed: int = 0
    save_assignments: bool = True
    plots: PlotsConfig = field(default_factory=PlotsConfig)
    store: Optional[str] = None  # SQLite results store this run is appended to
    night: Optional[str] = None  # the nightly batch label; null: today's UTC date
    rerun: bool = False  # multirun: also re-run jobs whose folder holds a finished result


def register_schemas() -> None:
    """Put the schemas in Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConfig)
    for name, node in {
        "base": DatasetConfig,
        "cifar100": Cifar100Config,
        "stl10": STL10Config,
        "imagenet_dog": ImageNetDogConfig,
        "synthetic": SyntheticConfig,
    }.items():
        cs.store(group="schema/dataset", name=name, node=node)
    cs.store(group="schema/method", name="kmeans", node=KMeansMethodConfig)
    cs.store(group="schema/method", name="gmm", node=GMMMethodConfig)
    cs.store(group="schema/backbone", name="base", node=BackboneConfig)
    cs.store(group="schema/hardware", name="base", node=HardwareConfig)
