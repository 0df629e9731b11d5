"""k-means on raw pixels: the baseline row of every deep-clustering table (MiCE Table 2)."""

from __future__ import annotations

from typing import Optional

from clusterbench.cluster import kmeans
from clusterbench.cluster.state import kmeans_state
from clusterbench.data.dataset import ImageDataset
from clusterbench.methods.base import Prediction, RunContext, Timer, require_positive
from clusterbench.methods.classical import ClassicalMethod


class KMeansMethod(ClassicalMethod):
    """Lloyd's k-means (k-means++ seeding) on pixels in [0, 1], optionally PCA-reduced."""

    def __init__(
        self,
        num_clusters: Optional[int] = None,
        pca_dim: Optional[int] = None,
        backend: str = "faiss",
        niter: int = 50,
        restarts: int = 10,
        spherical: bool = False,
        max_points_per_centroid: Optional[int] = None,
    ) -> None:
        super().__init__(num_clusters, pca_dim)
        require_positive("method.niter", niter)
        require_positive("method.restarts", restarts)
        require_positive("method.max_points_per_centroid", max_points_per_centroid, allow_none=True)
        self.backend = str(getattr(backend, "value", backend))
        self.niter, self.restarts, self.spherical = niter, restarts, spherical
        self.max_points_per_centroid = max_points_per_centroid

    def fit_predict(self, data: ImageDataset, ctx: RunContext) -> Prediction:
        timings: dict[str, float] = {}
        timer = Timer(timings)
        k = self.clusters_for(data)
        x = self.features(data, ctx, timer)  # (N + unlabeled)×D
        with timer("fit"):
            result = kmeans(
                x,
                k,
                niter=self.niter,
                restarts=self.restarts,
                seed=ctx.seed,
                spherical=self.spherical,
                backend=self.backend,
                device=ctx.device,
                max_points_per_centroid=self.max_points_per_centroid,
                progress=ctx.progress,
            )
        assignments = result.assignments[: len(data)].cpu().numpy()
        info = {"inertia": result.inertia, "iterations": result.iterations, "backend": self.backend}
        clusters = kmeans_state(result.centroids, normalize=False, spherical=self.spherical, pca=self.projection)
        return Prediction(assignments, k, timings, info, embeddings=x[: len(data)].cpu().numpy(), clusters=clusters)
