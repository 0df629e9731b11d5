"""Clustering algorithms shared by every method: k-means (faiss / torch) and GMM."""

from clusterbench.cluster.gmm import GMMResult, gmm
from clusterbench.cluster.kmeans import KMeansResult, assign, kmeans

__all__ = ["GMMResult", "KMeansResult", "assign", "gmm", "kmeans"]
