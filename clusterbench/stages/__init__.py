"""Clustering stages: features in, assignments and a reusable clustering state out.

A stage runs after any trained method (``cluster=kmeans|gmm|umap|own``), at the end of the run
and on a finished run's folder (``clusterbench-recluster``); its state is what clusters.npz
holds, so ``clusterbench-predict`` assigns new images with it.
"""

from clusterbench.stages.base import Stage, StageFit

__all__ = ["Stage", "StageFit"]
