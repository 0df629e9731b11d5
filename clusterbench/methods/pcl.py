"""PCL: Prototypical Contrastive Learning (Li, Zhou, Xiong, Hoi, ICLR 2021, arXiv:2005.04966).

MoCo (query encoder, momentum key encoder, queue, InfoNCE) plus an EM loop over prototypes:

E-step, at the start of every epoch from epoch ``warmup_epochs`` on (before it: plain InfoNCE):

1. v_i = normalise(g_k(f_k(x_i)))  for every training image, un-augmented, momentum encoder
2. for each K_m in ``num_prototypes`` (m = 1 … M):
       k-means(v, K_m) → assignments s_m(i), centroids c_j;  prototypes c_j ← c_j / ‖c_j‖
       concentration φ_j = Σ_{i ∈ j} ‖v_i − c_j‖ / (Z_j · log(Z_j + α)),  α = 10
         clusters with Z_j ≤ 1 get max φ; φ clamped to its 10th–90th percentile;
         φ ← τ · φ / mean(φ)

M-step, every step (q = normalise(g_q(f_q(x_q))), k = the MoCo key of x_k):

3. L = InfoNCE(q, k, queue, τ) + (1/M) Σ_m ProtoNCE_m, in one of two forms (``method.proto_nce``):

   ``official`` (the default; the authors' pcl/builder.py, which produced the published numbers):
   one set of columns for the whole batch, the positive prototypes of *all* B rows (duplicates
   kept) followed by r prototypes that no row of the batch uses, sampled without replacement:
       ProtoNCE = (1/B) Σ_i −log  exp(q_i·c_{s_i} / φ_{s_i}) / Σ_{j ∈ columns} exp(q_i·c_j / φ_j)
   Row i's target is column i; rows sharing a prototype see it more than once in the
   denominator, as in the official code. r is capped at the number of unused prototypes (the
   official code would stop with an error when fewer than r are left: small K).

   ``paper`` (the equation as printed): each row against its own prototype and r prototypes
   sampled from its other K_m − 1 (r capped at K_m − 1):
       ProtoNCE = (1/B) Σ_i −log  exp(q_i·c_s / φ_s) / (exp(q_i·c_s / φ_s) + Σ_{j ∈ r} exp(q_i·c_j / φ_j))

   On the same inputs the two differ (by up to 0.7 on the checks against the official code): the
   official denominator holds the batch's other positives, so it also pushes each row away from
   its batch neighbours' prototypes.
4. momentum update, queue push: as MoCo.

Clusters: as MoCo, k-means on the L2-normalised backbone features (``cluster_on``).

Under DDP the E-step's features are gathered from every rank (``ctx.embed_all``); rank 0 runs the
k-means and broadcasts assignments, prototypes and φ, so every rank trains on the same ones.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clusterbench import distributed as D
from clusterbench.cluster import kmeans
from clusterbench.errors import ConfigError
from clusterbench.health import cluster_size_shares
from clusterbench.methods.base import require_positive
from clusterbench.methods.deep import Batch, EpochContext, InputShape, momentum_update
from clusterbench.methods.losses import info_nce
from clusterbench.methods.moco import MoCo, MoCoNet


def concentration(distances: torch.Tensor, assignments: torch.Tensor, k: int, temperature: float, alpha: float = 10.0) -> torch.Tensor:
    """The paper's concentration φ of each of ``k`` clusters (eq. 12 and the official code).

    ``distances``: N Euclidean (not squared) distances of each point to its cluster's centroid;
    ``assignments``: N cluster ids in [0, k). Returns k values with mean ``temperature``.

    φ_j = mean_{i ∈ j} ‖v_i − c_j‖ / log(Z_j + α). A cluster with at most one member has no
    spread to measure: it gets the largest φ (a loose prototype, as the official code). Then φ is
    clamped to its 10th–90th percentile (np.percentile's linear interpolation) so a few very
    tight or loose clusters cannot dominate, and rescaled to mean τ.
    Degenerate cases the paper does not meet: a populated cluster of identical points (φ = 0,
    a division by zero later) takes the smallest positive φ; if no φ is positive, all are τ.
    """
    d = distances.detach().double().flatten()
    a = assignments.detach().long().flatten().to(d.device)
    counts = torch.bincount(a, minlength=k).double()
    sums = torch.zeros(k, dtype=torch.float64, device=d.device).index_add_(0, a, d)
    phi = sums / counts.clamp_min(1) / torch.log(counts + alpha)
    spread = counts > 1
    if not bool(spread.any()):
        return torch.full((k,), float(temperature), dtype=torch.float32, device=d.device)
    phi = torch.where(spread, phi, phi[spread].max())
    positive = phi > 0
    if not bool(positive.any()):
        return torch.full((k,), float(temperature), dtype=torch.float32, device=d.device)
    phi = torch.where(positive, phi, phi[positive].min())
    phi = phi.clamp(torch.quantile(phi, 0.1), torch.quantile(phi, 0.9))
    return (temperature * phi / phi.mean()).float()


def sample_negative_prototypes(positives: torch.Tensor, k: int, r: int, gen: torch.Generator) -> torch.Tensor:
    """B×r prototype ids: for each row, r distinct ids of [0, k) other than its positive.

    One uniform r-subset of {0 … k−2} is drawn (on the CPU, from ``gen``) and shifted past each
    row's own prototype (j → j + [j ≥ s]): a bijection onto the other k − 1 ids, so each row's
    negatives are a uniform r-subset of its other prototypes. The batch shares the draw, as the
    official code shares its negatives; the cost is O(k) per step, not O(B·k).
    """
    if not 1 <= r <= k - 1:
        raise ValueError(f"cannot sample {r} negatives from {k - 1} other prototypes")
    base = torch.randperm(k - 1, generator=gen)[:r].to(positives.device)  # r
    return base[None, :] + (base[None, :] >= positives[:, None]).long()  # B×r


def proto_nce(q: torch.Tensor, prototypes: torch.Tensor, phi: torch.Tensor, positives: torch.Tensor, negatives: Optional[torch.Tensor]) -> torch.Tensor:
    """One ProtoNCE term in the paper's printed form (``method.proto_nce=paper``), batch mean:
    −log softmax over [own prototype, negatives] of q·c_j / φ_j.

    ``q``: B×D normalised; ``prototypes``: K×D normalised; ``phi``: K; ``positives``: B ids;
    ``negatives``: B×r ids, or None for all K − 1 other prototypes.
    """
    logits = (q @ prototypes.to(q.dtype).T).float() / phi[None, :]  # B×K, each column over its own φ
    if negatives is None:  # every other prototype is a negative: a plain K-way cross-entropy
        return F.cross_entropy(logits, positives)
    chosen = logits.gather(1, torch.cat([positives[:, None], negatives], dim=1))  # B×(1+r), positive first
    return F.cross_entropy(chosen, torch.zeros(len(q), dtype=torch.long, device=q.device))


def sample_unused_prototypes(positives: torch.Tensor, k: int, r: int, gen: torch.Generator) -> torch.Tensor:
    """The official form's negatives: min(r, #unused) distinct ids of [0, k) that no row of the
    batch has as its positive, a uniform draw (on the CPU, from ``gen``)."""
    used = torch.zeros(k, dtype=torch.bool)
    used[positives.cpu()] = True
    unused = torch.nonzero(~used).flatten()
    chosen = unused[torch.randperm(len(unused), generator=gen)[: min(r, len(unused))]]
    return chosen.to(positives.device)


def proto_nce_official(q: torch.Tensor, prototypes: torch.Tensor, phi: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """One ProtoNCE term in the official code's form, batch mean: the columns are every row's
    positive prototype (B, duplicates kept) then ``negatives`` (r ids no row uses); row i's
    target is column i; each column is scaled by its own φ.

    ``q``: B×D normalised; ``prototypes``: K×D normalised; ``phi``: K; ``positives``: B ids.
    """
    columns = torch.cat([positives, negatives])  # B + r
    logits = (q @ prototypes[columns].to(q.dtype).T).float() / phi[columns][None, :]  # B×(B + r)
    return F.cross_entropy(logits, torch.arange(len(q), device=q.device))


PROTO_NCE_FORMS = ("official", "paper")  # method.proto_nce: the authors' code (published numbers) | the equation as printed


class PCL(MoCo):
    """MoCo v2 plus ProtoNCE over several k-means granularities, re-clustered every epoch."""

    def __init__(
        self,
        num_prototypes: Sequence[int] = (250, 500, 1000),
        warmup_epochs: int = 20,
        negative_prototypes: int = 16384,
        concentration_alpha: float = 10.0,
        estep_niter: int = 20,
        estep_restarts: int = 5,
        estep_backend: str = "faiss",
        proto_nce: str = "official",
        **moco: Any,
    ) -> None:
        super().__init__(**moco)
        ks = list(num_prototypes) if num_prototypes is not None else []
        if not ks or any(not isinstance(k, int) or isinstance(k, bool) or k < 2 for k in ks):
            raise ConfigError("method.num_prototypes", f"{ks} is not a list of cluster counts; give one or more integers ≥ 2, e.g. [10,20,40]")
        if len(set(ks)) != len(ks):
            raise ConfigError("method.num_prototypes", f"{ks} repeats a K; list each number of prototypes once")
        if warmup_epochs < 0:
            raise ConfigError("method.warmup_epochs", f"{warmup_epochs} is negative; use 0 (ProtoNCE from the first epoch) or more")
        require_positive("method.negative_prototypes", negative_prototypes)
        require_positive("method.concentration_alpha", concentration_alpha)
        require_positive("method.estep_niter", estep_niter)
        require_positive("method.estep_restarts", estep_restarts)
        backend = str(getattr(estep_backend, "value", estep_backend))
        if backend not in ("faiss", "torch"):
            raise ConfigError("method.estep_backend", f"'{backend}' is not a k-means back-end; use faiss or torch")
        form = str(getattr(proto_nce, "value", proto_nce))
        if form not in PROTO_NCE_FORMS:
            raise ConfigError("method.proto_nce", f"'{form}' is not a ProtoNCE form; use official (the authors' code, the default) or paper (the printed equation)")
        self.proto_nce = form
        self.num_prototypes, self.warmup_epochs, self.negative_prototypes = ks, warmup_epochs, negative_prototypes
        self.concentration_alpha, self.estep_niter, self.estep_restarts, self.estep_backend = concentration_alpha, estep_niter, estep_restarts, backend
        # the E-step's result, one entry per K; recomputed at every epoch start (also after a resume)
        self.im2cluster: list[torch.Tensor] = []  # N ids
        self.prototypes: list[torch.Tensor] = []  # K×D, normalised
        self.phi: list[torch.Tensor] = []  # K concentrations, mean τ
        self.proto_gen = torch.Generator()  # draws the negative prototypes; the same on every rank

    def setup(self, backbone: nn.Module, shape: InputShape) -> nn.Module:
        net = super().setup(backbone, shape)
        self.proto_gen.manual_seed(self.seed * 1_000_003 + 7)  # its own stream, apart from MoCo's shuffle
        return net

    # --- E-step ---------------------------------------------------------------------------

    @torch.no_grad()
    def chance_loss(self) -> Optional[float]:
        """None: InfoNCE plus ProtoNCE over changing prototype sets has no single chance value."""
        return None

    def on_epoch_start(self, ctx: EpochContext) -> Optional[dict[str, float]]:
        if max(self.num_prototypes) > ctx.num_images:
            raise ConfigError("method.num_prototypes", f"K = {max(self.num_prototypes)} prototypes from {ctx.num_images} training images; use at most {ctx.num_images}")
        self.im2cluster, self.prototypes, self.phi = [], [], []
        if ctx.epoch < self.warmup_epochs:
            return None  # warm-up: InfoNCE alone
        net: MoCoNet = self.model  # type: ignore[assignment]
        v = ctx.embed_all(net.key)  # N×D, normalised momentum-encoder features, all ranks' images
        n, dim = v.shape
        stats = torch.zeros(3 * len(self.num_prototypes) + 2, dtype=torch.float64, device=ctx.device)  # + worst empty and largest shares
        for m, k in enumerate(self.num_prototypes):
            im2cluster = torch.zeros(n, dtype=torch.long, device=ctx.device)
            prototypes = torch.zeros(k, dim, dtype=torch.float32, device=ctx.device)
            phi = torch.zeros(k, dtype=torch.float32, device=ctx.device)
            if ctx.dist.is_main:  # once, then broadcast: faiss's threads need not agree bit for bit across ranks
                seed = int(np.random.SeedSequence([self.seed, ctx.epoch, m]).generate_state(1)[0] >> 1)
                result = kmeans(v, k, niter=self.estep_niter, restarts=self.estep_restarts, seed=seed, backend=self.estep_backend, device=ctx.device)
                im2cluster.copy_(result.assignments)
                # the official code's distances: squared L2 to the (un-normalised) centroid the point
                # was assigned to, square-rooted; the prototypes used in the loss are then normalised
                dist = (v - result.centroids[result.assignments]).pow(2).sum(1).clamp_min(0).sqrt()
                prototypes.copy_(F.normalize(result.centroids, dim=1))
                phi.copy_(concentration(dist, result.assignments, k, self.temperature, self.concentration_alpha))
                counts = torch.bincount(result.assignments, minlength=k)
                raw = dist.new_zeros(k).index_add_(0, result.assignments, dist) / counts.clamp_min(1) / torch.log(counts + self.concentration_alpha)
                stats[3 * m : 3 * m + 3] = torch.tensor([result.inertia, float(raw[counts > 1].mean()) if bool((counts > 1).any()) else 0.0,
                                                         float((counts <= 1).sum())], dtype=torch.float64)
                empty_share, largest_share = cluster_size_shares(result.assignments, k)
                stats[-2], stats[-1] = max(float(stats[-2]), empty_share), max(float(stats[-1]), largest_share)
            for t in (im2cluster, prototypes, phi):
                D.broadcast_(t)
            self.im2cluster.append(im2cluster)
            self.prototypes.append(prototypes)
            self.phi.append(phi)
        D.broadcast_(stats)
        out: dict[str, float] = {}
        for m, k in enumerate(self.num_prototypes):
            inertia, raw_phi, small = stats[3 * m : 3 * m + 3].tolist()
            out.update({f"estep_k{k}_inertia": inertia, f"estep_k{k}_raw_phi": raw_phi, f"estep_k{k}_singletons": small})
        out["estep_empty_share"], out["estep_largest_share"] = float(stats[-2]), float(stats[-1])
        return out

    # --- M-step ---------------------------------------------------------------------------

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        net: MoCoNet = self.model  # type: ignore[assignment]
        x_q, x_k = batch.views[0], batch.views[1]
        pairs = [(x_q, x_k), (x_k, x_q)] if self.symmetric else [(x_q, x_k)]
        queries = [net.query(a) for a, _ in pairs]  # each B×D
        with torch.no_grad():
            momentum_update(nn.ModuleList([net.backbone_k, net.head_k]), nn.ModuleList([net.backbone, net.head]), self.momentum)
            keys = [self.shuffled_keys(b) for _, b in pairs]
        negatives = net.queue.features.clone()  # before this batch joins it
        contrast = sum(info_nce(q, k, negatives, self.temperature) for q, k in zip(queries, keys)) / len(pairs)
        out: dict[str, torch.Tensor] = {"info_nce": contrast.detach()}
        loss = contrast
        if self.prototypes:  # after the warm-up
            proto = self.proto_loss(queries, batch.indices)
            loss = loss + proto
            out["proto_nce"] = proto.detach()
        net.queue.push(D.all_gather(torch.cat(keys)))
        return {"loss": loss, **out}

    def proto_loss(self, queries: list[torch.Tensor], indices: torch.Tensor) -> torch.Tensor:
        """(1/M) Σ_m ProtoNCE in ``method.proto_nce``'s form; each draw of negatives is shared by
        the batch (and by both queries of a symmetric pair), as in the official code."""
        total = queries[0].new_zeros((), dtype=torch.float32)
        for im2cluster, prototypes, phi in zip(self.im2cluster, self.prototypes, self.phi):
            k = len(prototypes)
            positives = im2cluster[indices.to(im2cluster.device)]
            if self.proto_nce == "official":
                unused = sample_unused_prototypes(positives, k, self.negative_prototypes, self.proto_gen)
                total = total + sum(proto_nce_official(q, prototypes, phi, positives, unused) for q in queries) / len(queries)
                continue
            r = min(self.negative_prototypes, k - 1)
            negatives = None if r == k - 1 else sample_negative_prototypes(positives, k, r, self.proto_gen)
            total = total + sum(proto_nce(q, prototypes, phi, positives, negatives) for q in queries) / len(queries)
        return total / len(self.prototypes)

    # --- resume ---------------------------------------------------------------------------

    def method_state(self) -> dict[str, Any]:
        return {**super().method_state(), "proto_gen": self.proto_gen.get_state()}

    def load_method_state(self, state: dict[str, Any]) -> None:
        super().load_method_state(state)  # the engine loads checkpoints on the CPU: generator states fit as they are
        self.proto_gen.set_state(state["proto_gen"])


__all__ = ["PCL", "PROTO_NCE_FORMS", "concentration", "proto_nce", "proto_nce_official", "sample_negative_prototypes", "sample_unused_prototypes"]
