"""Gaussian mixture clustering: a thin wrapper over scikit-learn's GaussianMixture (EM)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.mixture import GaussianMixture


@dataclass
class GMMResult:
    assignments: np.ndarray  # N int64, argmax of the posterior responsibilities
    model: GaussianMixture
    log_likelihood: float  # mean per-sample log-likelihood of the best restart
    converged: bool
    confidence: np.ndarray  # N: the responsibility of the assigned component


def gmm(
    x: np.ndarray,
    k: int,
    *,
    covariance_type: str = "full",
    restarts: int = 1,
    max_iter: int = 100,
    reg_covar: float = 1e-6,
    seed: int = 0,
) -> GMMResult:
    """Fit a K-component mixture by EM (k-means initialisation) and return the MAP components.

    ``restarts`` is scikit-learn's ``n_init``: the restart with the best likelihood is kept.
    """
    model = GaussianMixture(
        n_components=k,
        covariance_type=str(getattr(covariance_type, "value", covariance_type)),
        n_init=restarts,
        max_iter=max_iter,
        reg_covar=reg_covar,
        random_state=seed,
    )
    x64 = np.asarray(x, dtype=np.float64)
    assignments = model.fit_predict(x64)
    confidence = model.predict_proba(x64).max(1)
    return GMMResult(assignments.astype(np.int64), model, float(model.lower_bound_), bool(model.converged_), confidence)
