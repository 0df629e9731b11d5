"""Gaussian mixture model on raw pixels (PCA-reduced by default): the GMM baseline."""

from __future__ import annotations

from typing import Optional

from clusterbench.cluster import gmm
from clusterbench.cluster.state import gmm_state
from clusterbench.data.dataset import ImageDataset
from clusterbench.errors import ConfigError
from clusterbench.methods.base import Prediction, RunContext, Timer, require_positive
from clusterbench.methods.classical import ClassicalMethod


class GMMMethod(ClassicalMethod):
    """EM on a K-component Gaussian mixture; each image goes to its most probable component."""

    def __init__(
        self,
        num_clusters: Optional[int] = None,
        pca_dim: Optional[int] = 50,
        covariance_type: str = "full",
        restarts: int = 1,
        max_iter: int = 100,
        reg_covar: float = 1e-6,
    ) -> None:
        super().__init__(num_clusters, pca_dim)
        require_positive("method.restarts", restarts)
        require_positive("method.max_iter", max_iter)
        if reg_covar < 0:
            raise ConfigError("method.reg_covar", f"{reg_covar} is negative; use a small non-negative value such as 1e-6")
        self.covariance_type = str(getattr(covariance_type, "value", covariance_type))
        self.restarts, self.max_iter, self.reg_covar = restarts, max_iter, reg_covar

    def fit_predict(self, data: ImageDataset, ctx: RunContext) -> Prediction:
        timings: dict[str, float] = {}
        timer = Timer(timings)
        k = self.clusters_for(data)
        x = self.features(data, ctx, timer).cpu().numpy()  # scikit-learn runs on the CPU
        with timer("fit"):
            result = gmm(
                x,
                k,
                covariance_type=self.covariance_type,
                restarts=self.restarts,
                max_iter=self.max_iter,
                reg_covar=self.reg_covar,
                seed=ctx.seed,
            )
        info = {"log_likelihood": result.log_likelihood, "converged": result.converged, "covariance_type": self.covariance_type}
        clusters = gmm_state(result.model, pca=self.projection)
        return Prediction(result.assignments[: len(data)], k, timings, info, embeddings=x[: len(data)], clusters=clusters,
                          confidence=result.confidence[: len(data)])
