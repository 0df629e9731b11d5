"""``cluster=gmm``: a full-covariance Gaussian mixture on PCA-reduced, L2-normalised features
(the MNIST study's AE(GMM) read-out, for any method). Each point's confidence is the
responsibility of its component."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from sklearn.decomposition import PCA

from clusterbench.cluster import gmm
from clusterbench.cluster.state import gmm_state, pca_of, project
from clusterbench.errors import ConfigError
from clusterbench.methods.base import require_positive
from clusterbench.stages.base import Stage, StageFit


def reduce(features: torch.Tensor, normalize: bool, pca_dim: Optional[int], seed: int) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """Normalised, PCA-projected features and the projection's state keys (empty without PCA).
    Projected by ``state.project``, the code prediction runs, so a run's own images are
    assigned exactly as in the run."""
    keys: dict[str, Any] = {"normalize": normalize}
    x = project(features, keys)
    if pca_dim is None or pca_dim >= x.shape[1]:
        return x, {}
    if pca_dim > x.shape[0]:
        raise ConfigError("cluster.pca_dim", f"{pca_dim} dimensions from {x.shape[0]} images; use at most {x.shape[0]} or null")
    pca = pca_of(PCA(n_components=pca_dim, svd_solver="randomized", random_state=seed).fit(x.cpu().numpy()))
    return project(features, {**keys, **pca}), pca


class GMMStage(Stage):
    name = "gmm"

    def __init__(self, pca_dim: Optional[int] = 50, covariance_type: str = "full", restarts: int = 1, max_iter: int = 100,
                 reg_covar: float = 1e-6, normalize: bool = True) -> None:
        require_positive("cluster.pca_dim", pca_dim, allow_none=True)
        require_positive("cluster.restarts", restarts)
        require_positive("cluster.max_iter", max_iter)
        self.pca_dim, self.restarts, self.max_iter, self.reg_covar, self.normalize = pca_dim, restarts, max_iter, reg_covar, normalize
        self.covariance_type = str(getattr(covariance_type, "value", covariance_type))

    def fit(self, features: torch.Tensor, k: int, seed: int, method: Any) -> StageFit:
        x, pca = reduce(features, self.normalize, self.pca_dim, seed)
        result = gmm(x.cpu().numpy(), k, covariance_type=self.covariance_type, restarts=self.restarts, max_iter=self.max_iter,
                     reg_covar=self.reg_covar, seed=seed)
        state = gmm_state(result.model, normalize=self.normalize, pca=pca)
        return StageFit(result.assignments, state, result.confidence, {"log_likelihood": result.log_likelihood, "converged": result.converged})
