"""What the classical baselines share: backbone features (raw pixels by default), then PCA."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from sklearn.decomposition import PCA
from tqdm.auto import tqdm

from clusterbench.cluster.state import pca_of, project
from clusterbench.data.dataset import ImageDataset
from clusterbench.errors import ConfigError
from clusterbench.methods.base import Method, RunContext, Timer, require_positive

FEATURE_BATCH = 4096  # images per backbone call: bounded memory, few Python round trips


@torch.no_grad()
def extract_features(images: torch.Tensor, ctx: RunContext) -> torch.Tensor:
    """Backbone features N×D (float32) of uint8 images, computed in batches on ``ctx.device``
    (kept there).

    Each batch is written into one output allocated after the first batch: keeping the batches
    and concatenating them held the features twice (raw CIFAR-10: 2 × 0.74 GB at the peak).
    Only one batch of the images is converted to floats at a time, so ``images`` may be a
    memory-mapped array larger than RAM.
    """
    backbone = ctx.backbone.to(ctx.device).eval()
    n = len(images)
    out: Optional[torch.Tensor] = None
    starts = tqdm(range(0, n, FEATURE_BATCH), desc="features", unit="batch", leave=False, disable=not ctx.progress or n <= FEATURE_BATCH)
    for s in starts:
        part = backbone(images[s : s + FEATURE_BATCH].to(ctx.device))  # B×D
        if out is None:
            out = torch.empty((n, *part.shape[1:]), dtype=torch.float32, device=part.device)  # N×D
        out[s : s + len(part)] = part
    if out is None:  # no images: the backbone's width from an empty batch
        return backbone(images.to(ctx.device)).float()
    return out


class ClassicalMethod(Method):
    """A method with no training loop: features → optional PCA → a clustering algorithm."""

    def __init__(self, num_clusters: Optional[int] = None, pca_dim: Optional[int] = None) -> None:
        super().__init__(num_clusters)
        require_positive("method.pca_dim", pca_dim, allow_none=True)
        self.pca_dim = pca_dim
        self.projection: dict[str, np.ndarray] = {}  # the fitted PCA (clusters.npz keys), when pca_dim is set

    def features(self, data: ImageDataset, ctx: RunContext, timer: Timer) -> torch.Tensor:
        """Features of ``data.train_images()``; the first ``len(data)`` rows are the evaluated images."""
        with timer("features"):
            x = extract_features(data.train_images(), ctx)
        self.projection = {}
        if self.pca_dim is None:
            return x
        n, d = x.shape
        if self.pca_dim > min(n, d):
            what = f"the {d} features of {data.name} images" if self.pca_dim > d else f"the {n} images"
            raise ConfigError("method.pca_dim", f"{self.pca_dim} is larger than {what}; use at most {min(n, d)} or null")
        with timer("pca"):
            # randomized SVD: the exact solver on 70k×784 is 10× slower for the same top components
            pca = PCA(n_components=self.pca_dim, svd_solver="randomized", random_state=ctx.seed).fit(x.cpu().numpy())
            self.projection = pca_of(pca)
            # projected by the same code that projects new images (clusterbench-predict), so a
            # run's own images get exactly the run's assignments back
            reduced = project(x, {"normalize": False, **self.projection})
        return reduced.contiguous()
