"""SwAV: Swapping Assignments between Views (Caron et al., "Unsupervised Learning of Visual
Features by Contrasting Cluster Assignments", NeurIPS 2020).

Per step, for the V crops of each image (global crops first, multi-crop's small ones after):

1. C ← normalise_rows(C)                               prototypes back on the sphere, no grad
2. z_v = normalise(g(f(x_v)))                          backbone + projection head, every crop
3. for each global crop s (codes come only from these), without gradient:
       S = [queue_s · Cᵀ ; z_s · Cᵀ]                   the queue joins once full, from its epoch
       q_s = Sinkhorn(exp(S / ε), iterations)[-B:]     equipartition over the global batch
4. L = 1/|global| Σ_s 1/(V − 1) Σ_{t≠s} −mean_b Σ_k q_s log softmax(z_t · Cᵀ / τ)
5. push z_s of the global crops into the queue; backward;
   the prototypes' gradient is dropped for the first ``freeze_prototypes_niters`` steps

Sinkhorn–Knopp on Q = exp(S/ε)ᵀ (K × B, B = every rank's columns together):
   Q ← Q / ΣQ;  repeat: rows ← 1/K (row sums all-reduced over ranks);  columns ← 1/B;  Q ← B·Q
so every sample's code sums to 1 and every prototype receives ≈ B/K of the batch.

Under DDP the sums are all-reduced, so the codes equipartition the global batch; as in the
official code each rank's Sinkhorn uses its own queue of ``queue_length / world_size`` of its
own features (the sums then run over the whole ``queue_length``). Every rank stores all the
ranks' queues (gathered), so the checkpoint, written by rank 0, restores each rank's.

Clusters: when ``num_prototypes`` equals the cluster count, the argmax prototype of each
un-augmented image (k-means on the backbone features is logged beside it as ``kmeans_*``);
otherwise k-means on the L2-normalised backbone (or head) features.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clusterbench import distributed as D
from clusterbench.backbones.heads import projection_head
from clusterbench.cluster import kmeans
from clusterbench.cluster.state import assign as assign_clusters
from clusterbench.cluster.state import kmeans_state, prototype_state
from clusterbench.errors import ConfigError
from clusterbench.methods.base import require_positive
from clusterbench.methods.deep import Batch, DeepMethod, InputShape, eval_mode


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float, iterations: int, world_size: int = 1) -> torch.Tensor:
    """Codes (B×K, each row sums to 1) from this rank's scores z·Cᵀ (B×K), balanced over
    the prototypes across all ``world_size`` ranks (their sums are all-reduced).

    Computed in float64 after subtracting the global maximum score: exp(S/ε) reaches e^40 at
    ε = 0.05 and overflows float32 at ε ≈ 0.01; a constant factor cancels in the first
    normalisation, so the result is unchanged.
    """
    s = scores.detach().double()
    top = D.all_gather(s.max().reshape(1)).max()
    q = torch.exp((s - top) / epsilon).t()  # K×b
    k, b_total = q.shape[0], q.shape[1] * world_size
    total = q.sum()
    q /= D.all_reduce_(total)
    for _ in range(iterations):
        rows = q.sum(dim=1, keepdim=True)  # K×1: what each prototype holds, over every rank
        q /= D.all_reduce_(rows)
        q /= k
        q /= q.sum(dim=0, keepdim=True)  # each column is one sample, all on this rank
        q /= b_total
    q *= b_total  # columns sum to 1: a distribution over the prototypes per sample
    return q.t().to(scores.dtype if scores.dtype.is_floating_point else torch.float32)


def swapped_prediction_loss(scores: list[torch.Tensor], codes: list[torch.Tensor], temperature: float) -> torch.Tensor:
    """Mean over the coded crops s and the other crops t ≠ s of −mean_b Σ_k q_s log softmax(S_t/τ).

    ``scores``: V tensors B×K (z_t·Cᵀ of every crop, global first); ``codes``: the codes of the
    first len(codes) crops.
    """
    v = len(scores)
    loss = scores[0].new_zeros(())
    for s, q in enumerate(codes):
        sub = scores[0].new_zeros(())
        for t in range(v):
            if t != s:
                sub = sub - (q * F.log_softmax(scores[t] / temperature, dim=1)).sum(dim=1).mean()
        loss = loss + sub / (v - 1)
    return loss / len(codes)


class CodeQueue(nn.Module):
    """Each rank's recent features z of each global crop, newest first, and how many rows hold
    real features. Rank r uses its own ``length / world_size`` rows (the official code's per-rank
    queue), but every rank stores all ranks' blocks (G × world·L_r × D, filled from gathered z),
    so rank 0's checkpoint restores every rank's queue on resume. Buffers; G is known only from
    the first batch, so the buffer starts empty and takes a checkpoint's shape on loading."""

    def __init__(self, length: int, dim: int, world_size: int = 1) -> None:
        super().__init__()
        self.length, self.dim, self.world_size = length, dim, world_size  # length: per rank
        self.register_buffer("features", torch.zeros(0, length * world_size, dim))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    def full(self, crops: int) -> bool:
        return self.length > 0 and self.features.shape[0] == crops and int(self.filled) >= self.length

    def mine(self, rank: int) -> torch.Tensor:
        """This rank's queue: G × L_r × D."""
        return self.features.view(self.features.shape[0], self.world_size, self.length, self.dim)[:, rank]

    @torch.no_grad()
    def push(self, z: torch.Tensor) -> None:
        """Prepend every rank's z (G × world·b × D, rank-major as gathered) to its block and drop
        the oldest rows."""
        g, w = z.shape[0], self.world_size
        if self.features.shape[0] != g:  # the first push (or the crop count changed): start empty
            self.features = torch.zeros(g, w * self.length, self.dim, device=z.device)
            self.filled.zero_()
        new = z.detach().to(self.features.dtype).view(g, w, -1, self.dim)
        blocks = torch.cat([new, self.features.view(g, w, self.length, self.dim)], dim=2)[:, :, : self.length]
        self.features.copy_(blocks.reshape(g, w * self.length, self.dim))
        self.filled.copy_(torch.clamp(self.filled + new.shape[2], max=self.length))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        saved = state_dict.get(prefix + "features")
        if saved is not None and saved.shape != self.features.shape and saved.shape[1:] == self.features.shape[1:]:
            self.features = torch.zeros(saved.shape, dtype=self.features.dtype, device=self.features.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class SwAVNet(nn.Module):
    """Backbone f, projection head g, the prototypes C (a bias-free K × D linear map), the queue."""

    def __init__(self, backbone: nn.Module, head: nn.Module, feature_dim: int, num_prototypes: int, queue: CodeQueue) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head
        self.prototypes = nn.Linear(feature_dim, num_prototypes, bias=False)
        with torch.no_grad():
            self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))
        self.queue = queue

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """z = normalise(g(f(x))), in float32 (the scores and Sinkhorn need its precision)."""
        return F.normalize(self.head(self.backbone(x)).float(), dim=1)

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        w = self.prototypes.weight
        w.copy_(F.normalize(w, dim=1))

    def scores(self, z: torch.Tensor) -> torch.Tensor:
        """z·Cᵀ in float32 even under autocast: bf16 logits are off by ~0.4 % before /τ, /ε."""
        with torch.autocast(device_type=z.device.type, enabled=False):
            return z.float() @ self.prototypes.weight.float().t()


class SwAV(DeepMethod):
    """SwAV with multi-crop, the Sinkhorn–Knopp codes, the prototype freeze and the queue."""

    own_assignment = True  # cluster=own: the prototype argmax

    views_needed = 2

    def __init__(
        self,
        num_clusters: Optional[int] = None,
        kmeans_restarts: int = 3,
        num_prototypes: int = 3000,
        feature_dim: int = 128,
        head_layers: int = 2,
        head_hidden: int = 2048,
        head_batch_norm: bool = True,
        temperature: float = 0.1,
        epsilon: float = 0.05,
        sinkhorn_iterations: int = 3,
        freeze_prototypes_niters: int = 313,
        queue_length: int = 0,
        epoch_queue_starts: int = 15,
        cluster_on: str = "backbone",
    ) -> None:
        super().__init__(num_clusters, kmeans_restarts)
        if num_prototypes < 2:
            raise ConfigError("method.num_prototypes", f"{num_prototypes} prototypes cannot split anything; use 2 or more (the paper: 3000)")
        require_positive("method.feature_dim", feature_dim)
        require_positive("method.temperature", temperature)
        require_positive("method.sinkhorn_iterations", sinkhorn_iterations)
        if not epsilon > 0:
            raise ConfigError("method.epsilon", f"{epsilon} is not allowed; Sinkhorn's ε must be positive (the paper: 0.05, lower if the codes collapse)")
        if freeze_prototypes_niters < 0:
            raise ConfigError("method.freeze_prototypes_niters", f"{freeze_prototypes_niters} is negative; use 0 (no freeze) or a number of optimiser steps")
        if queue_length < 0:
            raise ConfigError("method.queue_length", f"{queue_length} is negative; use 0 (no queue) or a number of features")
        if epoch_queue_starts < 0:
            raise ConfigError("method.epoch_queue_starts", f"{epoch_queue_starts} is negative; use an epoch from 0")
        if cluster_on not in ("backbone", "head"):
            raise ConfigError("method.cluster_on", f"'{cluster_on}' is not a feature space; use backbone or head")
        self.num_prototypes, self.feature_dim = num_prototypes, feature_dim
        self.head_layers, self.head_hidden, self.head_batch_norm = head_layers, head_hidden, head_batch_norm
        self.temperature, self.epsilon, self.sinkhorn_iterations = temperature, epsilon, sinkhorn_iterations
        self.freeze_prototypes_niters = freeze_prototypes_niters
        self.queue_length, self.epoch_queue_starts = queue_length, epoch_queue_starts
        self.cluster_on = cluster_on

    def setup(self, backbone: nn.Module, shape: InputShape) -> nn.Module:
        head = projection_head(backbone.out_dim, self.head_hidden, self.feature_dim, num_layers=self.head_layers, batch_norm=self.head_batch_norm,
                               keys={"hidden_dim": "method.head_hidden", "out_dim": "method.feature_dim", "num_layers": "method.head_layers"})
        world = self.dist.world_size
        if self.queue_length % world:
            raise ConfigError("method.queue_length", f"{self.queue_length} does not split over {world} ranks (each keeps its share); use a multiple of {world}")
        return SwAVNet(backbone, head, self.feature_dim, self.num_prototypes, CodeQueue(self.queue_length // world, self.feature_dim, world))

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        net: SwAVNet = self.model  # type: ignore[assignment]
        net.normalize_prototypes()
        views, b = batch.views, len(batch.views[0])
        # the codes come from the global crops only; how many there are is the augmentation
        # recipe's (global_crops), not read from the crops' sizes (local crops may be as large)
        n_global = len(views) if batch.num_global is None else batch.num_global
        # one forward per run of same-sized crops: BN statistics over all crops of a resolution
        z_parts, start = [], 0
        while start < len(views):
            end = start + 1
            while end < len(views) and views[end].shape[-1] == views[start].shape[-1]:
                end += 1
            z_parts.append(net.project(torch.cat(views[start:end])))
            start = end
        z = torch.cat(z_parts)  # V·b × D
        scores = list(net.scores(z).split(b))  # V of b × K

        queue_on = self.queue_length > 0 and batch.epoch >= self.epoch_queue_starts
        use_queue = queue_on and net.queue.full(n_global)
        codes = []
        with torch.no_grad():
            for s in range(n_global):
                out = scores[s].detach()
                if use_queue:
                    out = torch.cat([net.scores(net.queue.mine(self.dist.rank)[s]), out])
                codes.append(sinkhorn(out, self.epsilon, self.sinkhorn_iterations, self.dist.world_size)[-b:])
        loss = swapped_prediction_loss(scores, codes, self.temperature)
        if queue_on:
            mine = z[: n_global * b].detach().view(n_global, b, -1)
            net.queue.push(D.all_gather(mine.transpose(0, 1).contiguous()).transpose(0, 1))  # G × world·b × D
        with torch.no_grad():  # how many prototypes the codes and the predictions use (K: all, 1: collapse)
            q = codes[0]
            p = F.softmax(scores[0].detach() / self.temperature, dim=1)
            stats = {"code_used": perplexity(q.mean(0)), "pred_used": perplexity(p.mean(0)),
                     "code_entropy": -(q * q.clamp_min(1e-12).log()).sum(1).mean(), "queue_used": torch.tensor(float(use_queue))}
        return {"loss": loss, **stats}

    def before_optimizer_step(self, step: int) -> None:
        # SwAV's freeze: the prototypes get no update at all (no gradient, no decay, no momentum)
        if step < self.freeze_prototypes_niters:
            self.model.prototypes.weight.grad = None

    def chance_loss(self) -> Optional[float]:
        """The swapped prediction with a uniform softmax over the prototypes: log K, whatever the codes."""
        return math.log(self.num_prototypes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        net: SwAVNet = self.model  # type: ignore[assignment]
        return net.backbone(x) if self.cluster_on == "backbone" else net.project(x)

    @torch.no_grad()
    def assign(self, features: torch.Tensor, clusters: dict[str, Any], chunk: int = 4096) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Prototype states score the head's output z (the head in evaluation mode); k-means
        states assign the features themselves."""
        if str(clusters["kind"]) != "prototypes" or self.cluster_on != "backbone":
            return assign_clusters(clusters, features)
        net: SwAVNet = self.model  # type: ignore[assignment]
        with eval_mode(net):
            device = net.prototypes.weight.device
            z = torch.cat([net.head(part.to(device)).float() for part in features.split(chunk)])  # N×d, normalised by the state
        return assign_clusters(clusters, z)

    def predict(self, features: torch.Tensor, k: int, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
        """The argmax prototype when there are k of them; k-means on the features otherwise."""
        result = kmeans(F.normalize(features.float(), dim=1), k, restarts=self.kmeans_restarts, seed=seed)
        km = result.assignments.cpu().numpy()
        km_state = kmeans_state(result.centroids, normalize=True)
        net: SwAVNet = self.model  # type: ignore[assignment]
        protos_state = prototype_state(F.normalize(net.prototypes.weight.detach().float(), dim=1), self.temperature)
        protos, confidence = self.assign(features, protos_state)
        info: dict[str, Any] = {"prototypes_used": int(len(np.unique(protos))), "inertia": result.inertia}
        if self.num_prototypes == k:
            info.update(alternatives={"kmeans": km}, clusters=protos_state, confidence=confidence)
            return protos, info
        info["clusters"] = km_state
        return km, info


def perplexity(p: torch.Tensor) -> torch.Tensor:
    """exp(entropy) of a distribution: the effective number of prototypes it uses."""
    return torch.exp(-(p * p.clamp_min(1e-12).log()).sum())
