"""Training-health warnings: the failure modes users keep reporting, named when they happen.

Signs, each reported once per run (the first epoch it shows), with a hint:

- ``collapse``: at an evaluation the clusters' effective number (exp of the entropy of the
  cluster sizes) is below K/2, or the features are nearly all equal (mean pairwise cosine of a
  sample above 0.95);
- ``flat_loss``: the loss within 1 % of its chance value (the method's ``chance_loss``: log of
  the number of logits) for ``FLAT_EPOCHS`` epochs in a row — SwAV stuck at log K;
- ``estep_clusters``: after an E-step (PCL, DeepCluster) more than 10 % of the clusters empty,
  or one holding more than half the images;
- ``unused``: MiCE's experts (``experts_used``) or SwAV's codes (``code_used``) down to 1–2;
- ``best_beats_final``: the best evaluation during training more than 5 ACC points above the
  final result (checked by the run, which sees the final scores).

Where they go: one console line each, a ``health`` list in metrics.json, a column in the report.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

COLLAPSE_SHARE = 0.5  # effective clusters below this share of K
SAME_FEATURES = 0.95  # mean pairwise cosine above this
COSINE_SAMPLE = 512  # features sampled for the pairwise cosine
FLAT_TOLERANCE = 0.01  # |loss − chance| / chance
FLAT_EPOCHS = 5
EMPTY_SHARE = 0.1
GIANT_SHARE = 0.5
UNUSED = 2  # experts / codes in use at or below this (out of more)
BEST_DROP = 0.05  # ACC points (as a fraction)

HINTS = {
    "collapse": "lower the lr, raise the momentum or the temperature (SwAV: lower ε; MiCE: a teacher EMA of 0.99)",
    "flat_loss": "the loss sits at chance: lower ε (SwAV), a lower lr, or check that the views differ (augment=...)",
    "estep_clusters": "more k-means restarts, fewer prototypes, or a lower lr",
    "unused": "raise the temperature, lower ε (SwAV), or freeze the prototypes longer",
    "best_beats_final": "a shorter schedule or a lower lr; or read the clusters out with another stage (cluster=scan)",
}


def effective_clusters(ids: np.ndarray) -> float:
    """exp of the entropy of the cluster sizes: K for equal clusters, 1 for a single one."""
    counts = np.bincount(np.asarray(ids, dtype=np.int64))
    p = counts[counts > 0] / counts.sum()
    return float(math.exp(-(p * np.log(p)).sum()))


def mean_pairwise_cosine(features: torch.Tensor, sample: int = COSINE_SAMPLE, seed: int = 0) -> float:
    """Mean cosine similarity over the distinct pairs of (a seeded sample of) ``features``."""
    n = len(features)
    if n < 2:
        return 1.0
    rows = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:sample] if n > sample else torch.arange(n)
    x = F.normalize(features[rows.to(features.device)].float(), dim=1)
    sim = x @ x.T
    m = len(x)
    return float((sim.sum() - sim.diagonal().sum()) / (m * (m - 1)))


def cluster_size_shares(assignments: torch.Tensor, k: int) -> tuple[float, float]:
    """(share of the k clusters that are empty, share of the images in the largest cluster)."""
    counts = torch.bincount(assignments.flatten().long(), minlength=k)
    return float((counts == 0).sum()) / k, float(counts.max()) / max(int(counts.sum()), 1)


@dataclass
class HealthMonitor:
    """Watches one training (one ``engine.train`` call) for the signs above."""

    k: int  # clusters
    chance_loss: Optional[float] = None  # the method's loss at chance, where it has one
    step: Optional[str] = None  # the training step (SCAN's) the warnings belong to
    # judge the features' mean pairwise cosine (False for probabilities, SCAE's presences: all in
    # the positive orthant, where a high mean cosine is no sign of collapse)
    cosine: bool = True
    warnings: list[dict[str, Any]] = field(default_factory=list)
    _flat_run: int = 0

    def _warn(self, sign: str, epoch: int, detail: str) -> None:
        if any(w["sign"] == sign for w in self.warnings):
            return  # once per sign: the first epoch it shows
        entry = {"sign": sign, "epoch": int(epoch), "detail": detail, "hint": HINTS[sign], **({"stage": self.step} if self.step else {})}
        self.warnings.append(entry)
        log.warning("health: %s at %sepoch %d: %s (hint: %s)", sign, f"{self.step} " if self.step else "", epoch, detail, HINTS[sign])

    def measure(self, ids: np.ndarray, features: torch.Tensor) -> dict[str, float]:
        """An evaluation's collapse measures, for its metrics.jsonl line (``on_epoch`` judges them)."""
        measures = {"effective_clusters": effective_clusters(ids) if len(ids) else float(self.k)}
        if self.cosine:
            measures["feature_cosine"] = mean_pairwise_cosine(features)
        return measures

    def on_epoch(self, record: Mapping[str, Any]) -> None:
        """Signs in one epoch's metrics.jsonl line (a resumed run replays its history here)."""
        epoch = int(record.get("epoch", 0))
        effective, cosine = record.get("effective_clusters"), record.get("feature_cosine")
        if isinstance(effective, float) and effective < COLLAPSE_SHARE * self.k:
            self._warn("collapse", epoch, f"{effective:.1f} effective clusters of {self.k}")
        elif isinstance(cosine, float) and cosine > SAME_FEATURES:
            self._warn("collapse", epoch, f"the features are nearly all equal (mean pairwise cosine {cosine:.3f})")
        loss = record.get("loss")
        if self.chance_loss and isinstance(loss, float) and math.isfinite(loss):
            flat = abs(loss - self.chance_loss) <= FLAT_TOLERANCE * abs(self.chance_loss)
            self._flat_run = self._flat_run + 1 if flat else 0
            if self._flat_run >= FLAT_EPOCHS:
                self._warn("flat_loss", epoch, f"loss {loss:.4g} within 1% of chance ({self.chance_loss:.4g}) for {self._flat_run} epochs")
        empty, largest = record.get("estep_empty_share"), record.get("estep_largest_share")
        if isinstance(empty, float) and empty > EMPTY_SHARE:
            self._warn("estep_clusters", epoch, f"{empty:.0%} of the E-step's clusters empty")
        elif isinstance(largest, float) and largest > GIANT_SHARE:
            self._warn("estep_clusters", epoch, f"one E-step cluster holds {largest:.0%} of the images")
        for key, what in (("experts_used", "experts"), ("code_used", "codes")):
            used = record.get(key)
            if isinstance(used, float) and self.k > UNUSED and used <= UNUSED + 0.5:  # code_used is a perplexity
                self._warn("unused", epoch, f"{used:.1f} {what} in use")


def best_beats_final(history: Sequence[Mapping[str, Any]], final_acc: Optional[float]) -> Optional[dict[str, Any]]:
    """The warning when an evaluation during training beat the final ACC by more than 5 points."""
    if final_acc is None:
        return None
    evaluated = [r for r in history if isinstance(r.get("acc"), float)]
    if not evaluated:
        return None
    best = max(evaluated, key=lambda r: r["acc"])
    if best["acc"] - final_acc <= BEST_DROP:
        return None
    where = f"{best['stage']} " if best.get("stage") else ""
    entry = {"sign": "best_beats_final", "epoch": int(best.get("epoch", 0)), "hint": HINTS["best_beats_final"],
             "detail": f"ACC {best['acc']:.1%} at {where}epoch {best.get('epoch')} against {final_acc:.1%} at the end"}
    log.warning("health: best_beats_final: %s (hint: %s)", entry["detail"], entry["hint"])
    return entry
