"""``cluster=scan``: SCAN (Van Gansbeke et al., ECCV 2020) after any trained method — mine
neighbours in its feature space, train clustering heads, self-label (``clusterbench.methods.scan``).

Unlike the other stages SCAN trains, so it is a second stage on the shared engine rather than
a fit of features: ``DeepMethod.fit_predict`` hands it the trained method, and it runs two
more ``engine.train`` calls on the same images, each with its own epochs, batch, optimiser
(the authors' Adam 1e-4), share of the budget, checkpoint file (``checkpoint_scan.pt``,
``checkpoint_selflabel.pt``) and ``stage``-tagged lines in metrics.jsonl. Each step keeps a
checkpoint of its final state, so a run killed anywhere resumes (``resume=true``) where it was.

Budget: ``cluster.minutes`` of ``trainer.max_minutes`` are kept back from the method's own
training; ``selflabel_share`` of them go to self-labelling and the rest to the SCAN step.
Each step's final embedding comes on top of its share.

The scores of each step's read-out (k-means of the pretext features, the SCAN head, the
self-labelled head) are recorded under ``method_info.scan``: the paper's
"k-means → SCAN → self-label" row.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Optional

import torch
from omegaconf import OmegaConf

from clusterbench import distributed as D
from clusterbench.cluster.neighbors import BACKENDS, nearest_neighbors
from clusterbench.errors import ConfigError
from clusterbench.methods.base import Prediction, RunContext, require_positive
from clusterbench.probes.protocol import PROBE_SCORES
from clusterbench.methods.scan import SCANClustering, SelfLabel, feature_dim, kept_head
from clusterbench.stages.base import Stage, StageFit

log = logging.getLogger(__name__)
SCAN_CHECKPOINT, SELFLABEL_CHECKPOINT = "checkpoint_scan.pt", "checkpoint_selflabel.pt"


def training_features(method: Any, data: Any, ctx: RunContext, pretext: Prediction) -> torch.Tensor:
    """The trained features of every training image, the rows SCAN samples: the run's final
    embedding, plus the train-only images (STL-10's unlabelled split) embedded here."""
    from clusterbench.engine import embed_dataset
    from clusterbench.methods.deep import eval_mode

    assert pretext.embeddings is not None
    features = torch.from_numpy(pretext.embeddings).to(ctx.device)
    images = data.train_images()
    if len(images) == len(features):
        return features
    extra = images[len(features):]  # chunks go to the device as they are embedded
    with eval_mode(method.model):
        rest = embed_dataset(method.embed, extra, pretext.preprocess["mean"], pretext.preprocess["std"], int(ctx.trainer.embed_batch_size),
                             D.DistInfo(), bool(ctx.trainer.channels_last), device=ctx.device)
    return torch.cat([features, rest.to(features.dtype)])


class SCANStage(Stage):
    name = "scan"
    trains = True  # runs on the engine after the method's training (``train``), not on features (``fit``)

    def __init__(self, num_neighbors: int = 20, entropy_weight: float = 5.0, num_heads: int = 10, select_entropy_weight: float = 1.0,
                 update_head_only: bool = False, epochs: int = 50, batch_size: int = 128, selflabel_epochs: int = 200,
                 selflabel_batch_size: int = 1000, threshold: float = 0.99, class_balance: bool = True, optimizer: str = "adam",
                 lr: float = 1e-4, weight_decay: float = 1e-4, selflabel_share: float = 0.5, eval_every: int = 0,
                 neighbor_backend: str = "auto") -> None:
        for key, value in (("num_neighbors", num_neighbors), ("num_heads", num_heads), ("epochs", epochs), ("batch_size", batch_size),
                           ("selflabel_batch_size", selflabel_batch_size), ("lr", lr)):
            require_positive(f"cluster.{key}", value)
        if selflabel_epochs < 0 or eval_every < 0 or weight_decay < 0:
            key = "selflabel_epochs" if selflabel_epochs < 0 else "eval_every" if eval_every < 0 else "weight_decay"
            raise ConfigError(f"cluster.{key}", "must not be negative")
        if not 0.0 < threshold < 1.0:
            raise ConfigError("cluster.threshold", f"{threshold} is not a probability threshold; use a value in (0, 1), e.g. 0.99")
        if not 0.0 <= selflabel_share < 1.0:
            raise ConfigError("cluster.selflabel_share", f"{selflabel_share} is not a share; use 0 ≤ share < 1")
        if entropy_weight < 0:
            raise ConfigError("cluster.entropy_weight", f"{entropy_weight} is negative; use 0 or more (the paper: 5)")
        if neighbor_backend not in BACKENDS:
            raise ConfigError("cluster.neighbor_backend", f"'{neighbor_backend}' is not offered; use {', '.join(BACKENDS)}")
        self.num_neighbors, self.entropy_weight, self.num_heads = num_neighbors, entropy_weight, num_heads
        self.select_entropy_weight, self.update_head_only = select_entropy_weight, update_head_only
        self.epochs, self.batch_size = epochs, batch_size
        self.selflabel_epochs, self.selflabel_batch_size = selflabel_epochs, selflabel_batch_size
        self.threshold, self.class_balance = threshold, class_balance
        self.optimizer = str(getattr(optimizer, "value", optimizer))
        self.lr, self.weight_decay, self.selflabel_share = lr, weight_decay, selflabel_share
        self.eval_every, self.neighbor_backend = eval_every, neighbor_backend

    def fit(self, features: torch.Tensor, k: int, seed: int, method: Any) -> StageFit:
        raise ConfigError("cluster", "cluster=scan trains the network further, so it needs the images, not only their features")

    def check_budget(self, trainer: Any) -> None:
        """Under ``trainer.max_minutes`` both SCAN steps need their share: ``cluster.minutes``,
        else a third of the budget (said on the console and recorded)."""
        if trainer.max_minutes is not None and self.minutes is None:
            self.minutes = float(trainer.max_minutes) / 3.0
            log.info("cluster=scan: %.2g of trainer.max_minutes=%s kept for SCAN (cluster.minutes sets the split)", self.minutes, trainer.max_minutes)

    def train(self, method: Any, data: Any, ctx: RunContext, pretext: Prediction) -> Prediction:
        """SCAN on ``method`` (trained; ``pretext`` is its final read-out): the clustering step,
        then self-labelling; returns the final prediction, with every step's scores."""
        from clusterbench.engine import train

        started = time.perf_counter()
        k = pretext.num_clusters
        n = len(data.train_images())
        if self.num_neighbors >= n:
            raise ConfigError("cluster.num_neighbors", f"{self.num_neighbors} neighbours of {n} images; use fewer")
        # 1. neighbours in the trained feature space, mined once (rank 0, then shared)
        t0 = time.perf_counter()
        neighbors = None
        if ctx.dist.is_main:
            neighbors = nearest_neighbors(training_features(method, data, ctx, pretext), self.num_neighbors, self.neighbor_backend).cpu()
        neighbors = D.broadcast_object(neighbors)
        mining_s = time.perf_counter() - t0
        c, size, _ = data.image_shape
        from clusterbench.methods.deep import InputShape

        dim = feature_dim(method, pretext.embeddings, InputShape(c, size), ctx.device)

        # 2. the clustering step
        step1 = SCANClustering(method, neighbors, k, dim, self.num_heads, self.entropy_weight, self.select_entropy_weight, self.update_head_only)
        scan_minutes = None if self.minutes is None else self.minutes * (1.0 - self.selflabel_share)
        scanned = train(step1, data, self._step_context(ctx, "scan", SCAN_CHECKPOINT, self.epochs, 2 * self.batch_size, scan_minutes, pretext.history))
        steps = {"pretext": pretext, "scan": scanned}
        final = scanned

        # 3. self-labelling with the kept head
        if self.selflabel_epochs:
            head = int(scanned.info.get("scan_head", 0)) if ctx.dist.is_main else 0
            head = D.broadcast_object(head)
            step2 = SelfLabel(method, kept_head(step1, head), k, self.threshold, self.class_balance)
            label_minutes = None if self.minutes is None else self.minutes * self.selflabel_share
            final = train(step2, data, self._step_context(ctx, "selflabel", SELFLABEL_CHECKPOINT, self.selflabel_epochs, self.selflabel_batch_size,
                                                          label_minutes, scanned.history))
            steps["selflabel"] = final

        info = {**pretext.info, "scan": {
            "neighbors_s": mining_s,
            **{f"{name}_{key}": v for name, step in steps.items() for key, v in step.info.get("scores", {}).items()},
            **{f"{name}_epochs": steps[name].info.get("epochs") for name in steps if name != "pretext"},
            **{key: scanned.info[key] for key in ("scan_head", "scan_head_loss") if key in scanned.info},
            **({"confident": final.info["confident"]} if "confident" in final.info else {}),
        }}
        info.pop("scores", None)
        info.update({key: final.info[key] for key in PROBE_SCORES if key in final.info})  # the probes of the final network
        info["health"] = [w for step in steps.values() for w in step.info.get("health", [])]  # every step's warnings
        timings = dict(pretext.timings)
        for name in ("scan", "selflabel"):
            for key, seconds in steps[name].timings.items() if name in steps else ():
                timings[f"{name}_{key}"] = seconds
        timings["cluster_stage"] = time.perf_counter() - started
        return dataclasses.replace(final, info=info, timings=timings)

    def _step_context(self, ctx: RunContext, name: str, checkpoint: str, epochs: int, batch_size: int, minutes: Optional[float],
                      history: list) -> RunContext:
        """The run's context for one SCAN step: its own trainer settings and checkpoint, one view per image."""
        trainer = OmegaConf.merge(ctx.trainer, {
            "epochs": epochs, "batch_size": batch_size, "max_minutes": minutes, "optimizer": self.optimizer, "lr": self.lr,
            "weight_decay": self.weight_decay, "schedule": "constant", "warmup_epochs": 0, "min_lr": 0.0, "eval_every": self.eval_every,
            "grad_clip": None,
        })
        augment = OmegaConf.merge(ctx.augment, {"global_crops": 1, "local_crops": 0})
        return dataclasses.replace(ctx, trainer=trainer, augment=augment, cluster=None, step=name, checkpoint_name=checkpoint,
                                   history_before=list(history), keep_final=True)
