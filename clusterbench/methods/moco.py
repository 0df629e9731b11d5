"""MoCo v2: Momentum Contrast (He et al., CVPR 2020; Chen et al., arXiv:2003.04297).

Per step, for two views x_q, x_k of each image:

1. q = normalise(g_q(f_q(x_q)))                       query encoder + projection head
2. θ_k ← m·θ_k + (1 − m)·θ_q                          momentum update, *before* the keys
3. k = normalise(g_k(f_k(x_k)))                       keys, no gradient, BN shuffled
4. L = InfoNCE(q, k⁺ = k, negatives = queue, τ)
5. enqueue k (gathered over all ranks), dequeue the oldest

Clusters: k-means on the L2-normalised backbone features f_q(x) of un-augmented images.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from clusterbench import distributed as D
from clusterbench.backbones.heads import projection_head
from clusterbench.backbones.split_bn import convert_split_bn
from clusterbench.errors import ConfigError
from clusterbench.methods.base import require_positive
from clusterbench.methods.deep import Batch, DeepMethod, InputShape, momentum_update
from clusterbench.methods.losses import info_nce
from clusterbench.methods.queue import FeatureQueue


class MoCoNet(nn.Module):
    """The query encoder (backbone + head), its momentum copy, and the queue of keys."""

    def __init__(self, backbone: nn.Module, head: nn.Module, queue: FeatureQueue) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head
        self.backbone_k, self.head_k = copy.deepcopy(backbone), copy.deepcopy(head)
        for p in [*self.backbone_k.parameters(), *self.head_k.parameters()]:
            p.requires_grad = False  # updated by momentum only
        self.queue = queue

    def query(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.backbone(x)), dim=1)  # B×D

    def key(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head_k(self.backbone_k(x)), dim=1)  # B×D


class MoCo(DeepMethod):
    """MoCo v2 with an MLP head, split-BN on one device and shuffle-BN under DDP."""

    views_needed = 2

    def __init__(
        self,
        num_clusters: Optional[int] = None,
        kmeans_restarts: int = 3,
        queue_size: int = 4096,
        momentum: float = 0.99,
        temperature: float = 0.1,
        feature_dim: int = 128,
        head_layers: int = 2,
        head_hidden: int = 512,
        head_batch_norm: bool = False,
        symmetric: bool = False,
        split_bn: int = 1,
        shuffle_bn: bool = True,
        cluster_on: str = "backbone",
    ) -> None:
        super().__init__(num_clusters, kmeans_restarts)
        require_positive("method.queue_size", queue_size)
        require_positive("method.temperature", temperature)
        require_positive("method.feature_dim", feature_dim)
        require_positive("method.split_bn", split_bn)
        if not 0.0 <= momentum < 1.0:
            raise ConfigError("method.momentum", f"{momentum} is outside [0, 1); MoCo uses 0.99–0.999")
        self.queue_size, self.momentum, self.temperature = queue_size, momentum, temperature
        self.feature_dim, self.head_layers, self.head_hidden, self.head_batch_norm = feature_dim, head_layers, head_hidden, head_batch_norm
        self.symmetric, self.split_bn, self.shuffle_bn = symmetric, split_bn, shuffle_bn
        if cluster_on not in ("backbone", "head"):
            raise ConfigError("method.cluster_on", f"'{cluster_on}' is not a feature space; use backbone or head")
        self.cluster_on = cluster_on
        self.shuffle_gen = torch.Generator()  # the key batch's shuffle; seeded in setup, the same on every rank

    def setup(self, backbone: nn.Module, shape: InputShape) -> nn.Module:
        # MoCo v2's head is Linear → ReLU → Linear, no BatchNorm (head_batch_norm adds SimCLR's)
        head = projection_head(backbone.out_dim, self.head_hidden, self.feature_dim, num_layers=self.head_layers, batch_norm=self.head_batch_norm,
                               keys={"hidden_dim": "method.head_hidden", "out_dim": "method.feature_dim", "num_layers": "method.head_layers"})
        # split-BN in both encoders (the keys are shuffled between the splits), as in the CIFAR demo
        net = MoCoNet(convert_split_bn(backbone, self.split_bn), convert_split_bn(head, self.split_bn), FeatureQueue(self.queue_size, self.feature_dim))
        self.shuffle_gen.manual_seed(self.seed)
        return net

    def check_batch(self, per_rank: int) -> None:
        if per_rank % self.split_bn:
            raise ConfigError("method.split_bn", f"{self.split_bn} splits do not divide the per-device batch of {per_rank}; use a divisor of it")

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        net: MoCoNet = self.model  # type: ignore[assignment]
        x_q, x_k = batch.views[0], batch.views[1]
        q = net.query(x_q)  # B×D
        with torch.no_grad():
            momentum_update(nn.ModuleList([net.backbone_k, net.head_k]), nn.ModuleList([net.backbone, net.head]), self.momentum)
            k = self.shuffled_keys(x_k)  # B×D
        negatives = net.queue.features.clone()  # K×D, before this batch joins it
        loss = info_nce(q, k, negatives, self.temperature)
        keys = k
        if self.symmetric:  # the CIFAR demo's option: also contrast (x_k → query, x_q → key)
            q2 = net.query(x_k)
            with torch.no_grad():
                k2 = self.shuffled_keys(x_q)
            loss = 0.5 * (loss + info_nce(q2, k2, negatives, self.temperature))
            keys = torch.cat([k, k2])
        net.queue.push(D.all_gather(keys))  # every rank enqueues the global batch: queues stay equal
        return {"loss": loss}

    @torch.no_grad()
    def shuffled_keys(self, x: torch.Tensor) -> torch.Tensor:
        """Keys computed in a shuffled order, returned in the batch's order.

        Under DDP the global batch is shuffled across ranks (shuffle-BN: each rank's BN sees other
        ranks' images); on one device the batch is shuffled across the split-BN groups.
        """
        net: MoCoNet = self.model  # type: ignore[assignment]
        world = self.dist
        if world.enabled and self.shuffle_bn:
            everything = D.all_gather(x)  # W·b×C×H×W
            perm = torch.randperm(len(everything), generator=self.shuffle_gen).to(x.device)
            b = len(x)
            mine = perm[world.rank * b : (world.rank + 1) * b]
            k_shuffled = D.all_gather(net.key(everything[mine]))  # keys of everything[perm], in that order
            k = torch.empty_like(k_shuffled)
            k[perm] = k_shuffled
            return k[world.rank * b : (world.rank + 1) * b]
        if self.split_bn > 1:
            perm = torch.randperm(len(x), generator=self.shuffle_gen).to(x.device)
            k = torch.empty(len(x), self.feature_dim, device=x.device, dtype=x.dtype)
            k[perm] = net.key(x[perm]).to(k.dtype)
            return k
        return net.key(x)

    def chance_loss(self) -> Optional[float]:
        """InfoNCE over the positive and ``queue_size`` negatives with equal logits."""
        return math.log(self.queue_size + 1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features (the paper's protocol), or the head's normalised output."""
        net: MoCoNet = self.model  # type: ignore[assignment]
        return net.backbone(x) if self.cluster_on == "backbone" else net.query(x)

    def method_state(self) -> dict[str, Any]:
        return {"shuffle_gen": self.shuffle_gen.get_state()}

    def load_method_state(self, state: dict[str, Any]) -> None:
        self.shuffle_gen.set_state(state["shuffle_gen"])

