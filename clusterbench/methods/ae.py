"""Autoencoder + k-means / GMM: reconstruct the image, cluster the bottleneck.

encoder = backbone → Linear → z (``embedding_dim``); decoder: z → image (an MLP, or a
Linear + two stride-2 transposed convolutions). Trained with the mean squared error between
the (standardised) input and its reconstruction. The MNIST reference study's AE(GMM) is an MLP
encoder (hidden 128, embedding 12), Adam and MSE, with a GMM on the embeddings.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clusterbench.cluster import gmm, kmeans
from clusterbench.cluster.state import gmm_state, kmeans_state
from clusterbench.errors import ConfigError
from clusterbench.methods.base import require_positive
from clusterbench.methods.deep import Batch, DeepMethod, InputShape


def mlp_decoder(embedding_dim: int, hidden: Sequence[int], shape: InputShape) -> nn.Module:
    """z → Linear/ReLU over ``hidden`` → C·H·W, reshaped to the image."""
    layers: list[nn.Module] = []
    width = embedding_dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
        width = h
    layers += [nn.Linear(width, shape.channels * shape.size * shape.size), nn.Unflatten(1, (shape.channels, shape.size, shape.size))]
    return nn.Sequential(*layers)


class ConvDecoder(nn.Module):
    """z → 64 maps of ⌈S/4⌉² → two stride-2 transposed convolutions → C×S×S."""

    def __init__(self, embedding_dim: int, shape: InputShape, width: int = 64) -> None:
        super().__init__()
        self.size, self.seed_size = shape.size, math.ceil(shape.size / 4)
        self.fc = nn.Sequential(nn.Linear(embedding_dim, width * self.seed_size**2), nn.ReLU(inplace=True))
        self.up = nn.Sequential(
            nn.Unflatten(1, (width, self.seed_size, self.seed_size)),
            nn.ConvTranspose2d(width, width // 2, 4, stride=2, padding=1),  # ×2
            nn.BatchNorm2d(width // 2),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(width // 2, shape.channels, 4, stride=2, padding=1),  # ×2
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.up(self.fc(z))  # B×C×4⌈S/4⌉×4⌈S/4⌉
        return x[..., : self.size, : self.size]  # crop the rounding


class AutoencoderNet(nn.Module):
    def __init__(self, backbone: nn.Module, embedding_dim: int, decoder: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.bottleneck = nn.Linear(backbone.out_dim, embedding_dim)
        self.decoder = decoder

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.bottleneck(self.backbone(x))  # B×embedding_dim


class Autoencoder(DeepMethod):
    """MSE autoencoder; the bottleneck is clustered with k-means or a GMM (``method.cluster``)."""

    views_needed = 1

    def __init__(
        self,
        num_clusters: Optional[int] = None,
        kmeans_restarts: int = 3,
        embedding_dim: int = 12,
        decoder: str = "mlp",
        decoder_hidden: Sequence[int] = (128,),
        cluster: str = "gmm",
        gmm_covariance: str = "full",
        augment_input: bool = False,
    ) -> None:
        super().__init__(num_clusters, kmeans_restarts)
        require_positive("method.embedding_dim", embedding_dim)
        for h in decoder_hidden:
            require_positive("method.decoder_hidden", h)
        self.embedding_dim = embedding_dim
        self.decoder_kind = str(getattr(decoder, "value", decoder))
        self.decoder_hidden = list(decoder_hidden)
        self.cluster = str(getattr(cluster, "value", cluster))
        self.gmm_covariance = str(getattr(gmm_covariance, "value", gmm_covariance))
        if self.decoder_kind not in ("mlp", "conv"):
            raise ConfigError("method.decoder", f"'{self.decoder_kind}' is not a decoder; use mlp or conv")
        if self.cluster not in ("kmeans", "gmm"):
            raise ConfigError("method.cluster", f"'{self.cluster}' is not a clustering; use kmeans or gmm")
        self.augmented = augment_input  # default: reconstruct the plain images

    def setup(self, backbone: nn.Module, shape: InputShape) -> nn.Module:
        if self.decoder_kind == "mlp":
            decoder = mlp_decoder(self.embedding_dim, self.decoder_hidden, shape)
        else:
            decoder = ConvDecoder(self.embedding_dim, shape)
        return AutoencoderNet(backbone, self.embedding_dim, decoder)

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        x = batch.views[0]  # B×C×S×S
        reconstruction = self.model.decoder(self.model.encode(x))
        return {"loss": F.mse_loss(reconstruction.float(), x.float())}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode(x)

    def predict(self, features: torch.Tensor, k: int, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
        """k-means or a GMM on the raw bottleneck (its scale is meaningful: no normalisation)."""
        if self.cluster == "kmeans":
            result = kmeans(features.float(), k, restarts=self.kmeans_restarts, seed=seed)
            return result.assignments.cpu().numpy(), {"inertia": result.inertia, "clusters": kmeans_state(result.centroids, normalize=False)}
        fit = gmm(features.float().cpu().numpy(), k, covariance_type=self.gmm_covariance, restarts=self.kmeans_restarts, seed=seed)
        return fit.assignments, {"log_likelihood": fit.log_likelihood, "clusters": gmm_state(fit.model), "confidence": fit.confidence}
