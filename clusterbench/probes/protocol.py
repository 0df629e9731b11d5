"""Which images the probes fit on and which they score, and the scores (``eval.knn``,
``eval.linear``).

A dataset with a test split (``split=all`` joins train and test) is probed train → test: the
train images' features are the kNN memory and the linear probe's training set, the test
images are scored. A dataset without one (digits, a user's folder) is split here: seeded and
stratified, ``eval.test_share`` held out, recorded. Features come from the model in eval mode
(BatchNorm's running statistics, no augmentation): the evaluator's own embedding.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

import torch

from clusterbench.probes.knn import knn_predict
from clusterbench.probes.linear import fit_linear_probe
from clusterbench.probes.split import stratified_split


PROBE_SCORES = ("knn_acc", "linear_acc", "linear_iterations")


@dataclass
class ProbeProtocol:
    labels: torch.Tensor  # N, of the evaluated images
    train: torch.Tensor  # indices the probes fit on
    test: torch.Tensor  # indices they score
    how: str  # "dataset split" | "stratified split"
    num_classes: int
    knn: bool
    knn_k: int
    knn_temperature: float
    linear: bool
    linear_l2: float
    linear_max_iter: int

    def scores(self, features: torch.Tensor) -> dict[str, float]:
        """``knn_acc`` and/or ``linear_acc`` of ``features`` (N×D, the evaluated images in order)."""
        out: dict[str, float] = {}
        labels = self.labels.to(features.device)
        train, test = self.train.to(features.device), self.test.to(features.device)
        if self.knn:
            pred = knn_predict(features[train], labels[train], features[test], self.num_classes, self.knn_k, self.knn_temperature)
            out["knn_acc"] = float((pred == labels[test]).float().mean())
        if self.linear:
            probe = fit_linear_probe(features[train], labels[train], self.num_classes, self.linear_l2, self.linear_max_iter)
            out["linear_acc"] = float((probe.predict(features[test]) == labels[test]).float().mean())
            out["linear_iterations"] = float(probe.iterations)
        return out

    def describe(self) -> dict[str, Any]:
        """The protocol as recorded in metrics.json."""
        return {
            "split": self.how, "n_train": int(len(self.train)), "n_test": int(len(self.test)),
            **({"knn": {"k": self.knn_k, "temperature": self.knn_temperature, "similarity": "cosine", "weights": "exp(s/τ)"}} if self.knn else {}),
            **({"linear": {"l2": self.linear_l2, "max_iter": self.linear_max_iter, "solver": "full-batch L-BFGS",
                           "features": "L2-normalised"}} if self.linear else {}),
        }


def probe_protocol(data: Any, cfg: Any, seed: int) -> Optional[ProbeProtocol]:
    """The run's probes (``cfg`` = the ``eval`` node), or None when none is asked for or the
    dataset has no labels."""
    if not (cfg.knn or cfg.linear) or not data.has_labels:
        return None
    labels = data.labels
    from_test = data.from_test
    if from_test is not None and bool(from_test.any()) and not bool(from_test.all()):
        test = torch.nonzero(from_test).flatten()
        train = torch.nonzero(~from_test).flatten()
        how = "dataset split (train → test)"
    else:
        tr, te = stratified_split(labels.numpy(), float(cfg.test_share), seed)
        train, test = torch.from_numpy(tr), torch.from_numpy(te)
        how = f"stratified {1 - cfg.test_share:.0%}/{cfg.test_share:.0%} split, seed {seed}"
    return ProbeProtocol(labels, train, test, how, data.num_classes, bool(cfg.knn), int(cfg.knn_k), float(cfg.knn_temperature),
                         bool(cfg.linear), float(cfg.linear_l2), int(cfg.linear_max_iter))


def heldout_protocol(base: ProbeProtocol, fit_labels: torch.Tensor, eval_labels: torch.Tensor, how: str) -> ProbeProtocol:
    """The probes for ``eval.split``: every fitted image is memory / training set, every
    evaluated image is scored; ``scores`` then takes the fitted features followed by the
    evaluated ones."""
    n, m = len(fit_labels), len(eval_labels)
    return dataclasses.replace(base, labels=torch.cat([fit_labels, eval_labels]), train=torch.arange(n), test=torch.arange(n, n + m), how=how)


def check_probe_settings(cfg: Any) -> None:
    """One-line errors for impossible probe settings, before any data is read."""
    from clusterbench.errors import ConfigError

    if cfg.knn_k < 1:
        raise ConfigError("eval.knn_k", f"{cfg.knn_k} neighbours; use 1 or more (the demo: 200)")
    if cfg.knn_temperature <= 0:
        raise ConfigError("eval.knn_temperature", f"{cfg.knn_temperature} is not a temperature; use a positive value (the demo: 0.07)")
    if cfg.linear_l2 < 0:
        raise ConfigError("eval.linear_l2", f"{cfg.linear_l2} is negative; use 0 or more")
    if cfg.linear_max_iter < 1:
        raise ConfigError("eval.linear_max_iter", f"{cfg.linear_max_iter}; use 1 or more")
    if not 0.0 < cfg.test_share < 1.0:
        raise ConfigError("eval.test_share", f"{cfg.test_share} is not a share; use a value in (0, 1), e.g. 0.2")


__all__ = ["PROBE_SCORES", "ProbeProtocol", "probe_protocol", "heldout_protocol", "check_probe_settings"]
