"""One experiment from a composed config: load → fit → evaluate → write results.

metrics.json is written last, atomically: its presence marks a finished run.
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from clusterbench.data import build_dataset
from clusterbench.errors import ClusterbenchError, ConfigError
from clusterbench.io import atomic_save_npy, atomic_write_json
from clusterbench.methods.base import Method, RunContext
from clusterbench.metrics import evaluate
from clusterbench.provenance import git_commit, library_versions
from clusterbench.summary import format_table, format_timings

log = logging.getLogger(__name__)


def resolve_device(hardware: DictConfig) -> torch.device:
    """``auto`` picks CUDA when a GPU is visible; asking for ``cuda`` without one is an error."""
    want = str(getattr(hardware.device, "value", hardware.device))
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want == "cuda" and not torch.cuda.is_available():
        raise ConfigError("hardware", "a GPU was requested but torch sees no CUDA device; use hardware=cpu or hardware=auto")
    if hardware.threads is not None:
        if hardware.threads < 1:
            raise ConfigError("hardware.threads", f"{hardware.threads} is not a thread count; use ≥ 1 or null")
        torch.set_num_threads(hardware.threads)
    return torch.device(want)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build(node: DictConfig, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate``, unwrapping our own errors from Hydra's wrapper."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as ex:
        if isinstance(ex.__cause__, ClusterbenchError):
            raise ex.__cause__ from None
        raise


def run_experiment(cfg: DictConfig, out_dir: Path, progress: bool = True) -> dict[str, Any]:
    """Run the experiment ``cfg`` describes and write its results into ``out_dir``."""
    start = time.perf_counter()
    if cfg.seed < 0:
        raise ConfigError("seed", f"{cfg.seed} is negative; use an integer ≥ 0")
    method: Method = build(cfg.method)
    device = resolve_device(cfg.hardware)
    seed_everything(cfg.seed)

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    data = build_dataset(cfg.dataset, cfg.seed)
    timings["load"] = time.perf_counter() - t0
    log.info("%s (%s): %d images %s, %d classes", data.name, data.split, len(data), data.image_shape, data.num_classes)

    ctx = RunContext(device=device, seed=cfg.seed, backbone=build(cfg.backbone), out_dir=out_dir, progress=progress)
    prediction = method.fit_predict(data, ctx)
    timings.update(prediction.timings)
    if prediction.assignments.shape != (len(data),):
        raise RuntimeError(f"{method.name} returned {prediction.assignments.shape} ids for {len(data)} images")

    t0 = time.perf_counter()
    scores = evaluate(data.labels.numpy(), prediction.assignments)
    timings["evaluate"] = time.perf_counter() - t0

    result: dict[str, Any] = {
        **scores,
        "acc_kind": "hungarian one-to-one",
        "n_samples": len(data),
        "n_clusters": prediction.num_clusters,
        "n_clusters_used": int(len(np.unique(prediction.assignments))),
        "n_classes": data.num_classes,
        "n_train_only": 0 if data.unlabeled is None else len(data.unlabeled),
        "method": method_name(cfg),
        "dataset": data.name,
        "split": data.split,
        "seed": int(cfg.seed),
        "device": str(device),
        "status": "completed",
        "method_info": prediction.info,
        "timings": timings,
        "wall_seconds": time.perf_counter() - start,
        "versions": library_versions(),
        "git": git_commit(),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    if cfg.save_assignments:
        atomic_save_npy(out_dir / "assignments.npy", prediction.assignments.astype(np.int64))
    atomic_write_json(out_dir / "metrics.json", result)
    print(format_table([result]))
    print(format_timings(timings) + f"   → {out_dir}")
    return result


def method_name(cfg: DictConfig) -> str:
    """The method's config-group choice (kmeans, gmm, ...), falling back to its class name."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return str(HydraConfig.get().runtime.choices["method"])
    except (ValueError, KeyError):
        return str(cfg.method._target_).rsplit(".", 1)[-1]
