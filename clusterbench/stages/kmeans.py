"""``cluster=kmeans``: k-means on the L2-normalised features, the protocol of most papers
(MoCo, PCL, DeepCluster, SCAN's baseline row). The default read-out of the contrastive methods,
so choosing it explicitly gives the same result as not choosing."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from clusterbench.cluster import kmeans
from clusterbench.cluster.state import kmeans_state
from clusterbench.methods.base import require_positive
from clusterbench.stages.base import Stage, StageFit


class KMeansStage(Stage):
    name = "kmeans"

    def __init__(self, restarts: int = 3, niter: int = 50, normalize: bool = True, backend: str = "faiss") -> None:
        require_positive("cluster.restarts", restarts)
        require_positive("cluster.niter", niter)
        self.restarts, self.niter, self.normalize = restarts, niter, normalize
        self.backend = str(getattr(backend, "value", backend))

    def fit(self, features: torch.Tensor, k: int, seed: int, method: Any) -> StageFit:
        x = F.normalize(features.float(), dim=1) if self.normalize else features.float()
        result = kmeans(x, k, niter=self.niter, restarts=self.restarts, seed=seed, backend=self.backend)
        return StageFit(result.assignments.cpu().numpy(), kmeans_state(result.centroids, normalize=self.normalize), info={"inertia": result.inertia})
