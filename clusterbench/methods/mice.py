"""MiCE: Mixture of Contrastive Experts (Tsai, Li & Zhu, ICLR 2021, arXiv:2105.01899).

A latent-variable model of instance discrimination: image x_n picks one of K experts z_n through
a gating network, and the chosen expert discriminates the image's own teacher embedding (its
"instance label" y_n) from a queue of other teacher embeddings. K = the number of clusters.

Networks (one shared backbone h(x)):
  f_{n,k} = normalise(W_k h(x_n))            expert k's student embedding, k = 1..K
  g_n     = normalise(W_g h(x_n))            the gating embedding
  v_{n,k} = teacher's f_{n,k}                momentum copy of backbone + expert heads (EMA m)
  ω_k     fixed Max-Mahalanobis centres      unit vectors, ω_i·ω_j = −1/(K−1): a buffer, not learned
  μ_k     expert prototypes                  unit vectors, closed-form update only
  Q_k     expert k's queue of ν teacher embeddings (FIFO, gathered over ranks)

Model:
  gating   p(z=k|x_n)       = softmax_k(ω_k·g_n / κ)
  expert   p(y_n|x_n, z=k)  = exp(v_{n,k}·(f_{n,k} + μ_k)/τ)
                              / [exp(v_{n,k}·(f_{n,k} + μ_k)/τ) + Σ_{u∈Q_k} exp(u·(f_{n,k} + μ_k)/τ)]
  posterior q(z=k|x_n, y_n) ∝ p(z=k|x_n) · p(y_n|x_n, z=k)

Per step (views x¹ student, x² teacher, x³ gating; x³ = x¹ when the recipe makes two views):
1. teacher ← m·teacher + (1 − m)·student                 (parameters only)
2. f = experts(x¹), g = gating(x³), v = teacher(x²)      v without gradient
3. E-step: q = posterior, detached
4. M-step: L = −(1/B) Σ_n Σ_k q_nk [log p(z=k|x_n) + log p(y_n|x_n,z=k) − log q_nk]   = −ELBO
   (experts learn through the first term, the gating through the KL(q ‖ p(z|x)) part)
5. enqueue v_{·,k} into Q_k for every k (all ranks' batches), dequeue the oldest

Per epoch (before its steps; the paper's Eq. 13), ``method.mu_update=full`` (the default):
  μ_k ← normalise(Σ_n q(z_n=k|x_n, y_n) v_{n,k}) over the whole training set (un-augmented images)
Or, ``method.mu_update=batch_ema`` (an option for short budgets, not the paper's schedule): Eq. 13's
sum estimated online from the training batches, after each step (m = ``method.mu_momentum``):
  S_k ← m·S_k + (1 − m)·(1/B) Σ_{n∈batch} q_nk v_{n,k},   μ_k ← normalise(S_k),   S starts at 0
  (so the first step's batch sets μ's direction). q and v are the step's own (augmented views);
  no pass over the whole set. Eq. 13 is the normalised mean of q_nk v_{n,k} over the set: this is
  its exponentially weighted running mean over recent batches, with a teacher that moves meanwhile.

Clusters: argmax_k q(z=k|x, y) with x¹ = x² = x³ = the un-augmented image, normalised against the
current queues (the official evaluation); argmax_k p(z=k|x) is logged beside it as ``gating_*``.

Deviations from the official code (TsungWeiTsai/MiCE), each on purpose:
- q is detached. The official loss keeps q's gradient, but q is the exact posterior, where the
  ELBO is stationary in q, so that gradient is zero: the same update, a cheaper backward.
- μ is updated from the soft posterior over the whole set at the start of each epoch (Eq. 13);
  the official code sums one-hot argmax posteriors of the epoch's training batches at its end,
  and also leaves μ in the optimiser (a parameter with weight decay) between updates.
- queues start as random unit vectors (MoCo's initialisation) rather than uniform noise.
"""

from __future__ import annotations

import copy
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clusterbench import distributed as D
from clusterbench.cluster.state import assign as assign_clusters
from clusterbench.cluster.state import posterior_state
from clusterbench.data.dataset import ImageDataset
from clusterbench.errors import ConfigError
from clusterbench.methods.base import Prediction, RunContext, require_positive
from clusterbench.methods.deep import Batch, DeepMethod, EpochContext, InputShape, momentum_update
from clusterbench.methods.queue import FeatureQueue

# --- the model's equations, as plain functions (tests check them against explicit loops) ----------


def max_mahalanobis_centres(k: int, dim: int) -> torch.Tensor:
    """K unit vectors in R^dim with pairwise inner product −1/(K−1) (a regular simplex), K×dim.

    Pang et al.'s construction (the official ``craft_MMcenters.m``): centre 1 is e_1; centre i
    fixes its first i−1 coordinates so that its inner product with each earlier centre is
    −1/(K−1), and its i-th coordinate so that it has unit norm. K points span K−1 dimensions.
    """
    if k < 2:
        raise ValueError(f"Max-Mahalanobis centres need K ≥ 2, got {k}")
    if dim < k - 1:
        raise ValueError(f"{k} Max-Mahalanobis centres need dim ≥ {k - 1}, got {dim}")
    c = torch.zeros(k, dim, dtype=torch.float64)
    c[0, 0] = 1.0
    for i in range(1, k):
        for j in range(i):
            c[i, j] = -(1.0 / (k - 1) + c[i] @ c[j]) / c[j, j]
        if i < dim:  # the last centre's own coordinate is 0 (≈ 1e-8 by rounding) and may lie outside R^dim
            c[i, i] = (1.0 - c[i].pow(2).sum()).clamp_min(0.0).sqrt()
    return F.normalize(c, dim=1).float()


def gating_log_prior(g: torch.Tensor, omega: torch.Tensor, kappa: float) -> torch.Tensor:
    """log p(z=k|x_n) = log softmax_k(ω_k·g_n / κ): B×K from g (B×D) and ω (K×D)."""
    return F.log_softmax(g @ omega.T / kappa, dim=1)


def expert_log_likelihood(f: torch.Tensor, v: torch.Tensor, queue: torch.Tensor, mu: torch.Tensor, tau: float) -> torch.Tensor:
    """log p(y_n|x_n, z=k): B×K.

    ``f``, ``v``: B×K×D student and teacher embeddings; ``queue``: ν×K×D teacher embeddings of
    earlier batches (expert k's negatives are ``queue[:, k]``); ``mu``: K×D. As in the official
    ELBO, μ_k is added to the student's f_{n,k} and both are scored against the teacher vectors:
    positive v_{n,k}·(f_{n,k} + μ_k), negatives u·(f_{n,k} + μ_k) for u in Q_k, all over τ.
    """
    mu = F.normalize(mu, dim=1)
    positive = (v * f).sum(2) + (v * mu).sum(2)  # B×K
    negative = torch.einsum("bkd,vkd->bkv", f, queue) + torch.einsum("kd,vkd->kv", mu, queue)  # B×K×ν
    logits = torch.cat([positive[:, :, None], negative], dim=2) / tau  # B×K×(1+ν)
    return positive / tau - torch.logsumexp(logits, dim=2)


def posterior(log_prior: torch.Tensor, log_lik: torch.Tensor) -> torch.Tensor:
    """q(z=k|x_n, y_n) ∝ p(z=k|x_n) p(y_n|x_n, z=k): B×K, rows sum to 1."""
    return torch.softmax(log_prior + log_lik, dim=1)


def mice_elbo(log_prior: torch.Tensor, log_lik: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """The negative ELBO, batch mean, with q the (detached) posterior; returns (loss, q, parts).

    −ELBO_n = −Σ_k q_nk log p(y_n|x_n,z=k) + KL(q_n ‖ p(z|x_n)); ``parts`` holds the two terms.
    """
    q = posterior(log_prior, log_lik).detach()
    log_q = torch.log(q.clamp_min(1e-30))
    nll = -(q * log_lik).sum(1).mean()
    kl = (q * (log_q - log_prior)).sum(1).mean()
    return nll + kl, q, {"nll": nll.detach(), "kl": kl.detach()}


def expert_prototypes(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The closed-form μ update (Eq. 13): μ_k = normalise(Σ_n q_nk v_{n,k}); q N×K, v N×K×D → K×D."""
    return F.normalize(torch.einsum("nk,nkd->kd", q, v), dim=1)


def expert_prototypes_ema(sums: torch.Tensor, q: torch.Tensor, v: torch.Tensor, momentum: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One online step of Eq. 13 (``mu_update=batch_ema``): returns (S', μ), both K×D.

    S' = m·S + (1 − m)·(1/B) Σ_n q_nk v_{n,k} from one batch (q B×K, v B×K×D), μ_k = normalise(S'_k).
    """
    new = momentum * sums + (1.0 - momentum) * torch.einsum("nk,nkd->kd", q, v) / len(q)
    return new, F.normalize(new, dim=1)


# --- networks ---------------------------------------------------------------------------------


class MiCENet(nn.Module):
    """Student (backbone, K expert heads, gating head), the teacher, and MiCE's buffers."""

    def __init__(self, backbone: nn.Module, num_experts: int, dim: int, queue_size: int, online_mu: bool = False) -> None:
        super().__init__()
        self.k, self.dim = num_experts, dim
        self.backbone = backbone
        # K linear expert heads, as one Linear to K·D (the official heads are K separate Linears)
        self.experts = nn.Linear(backbone.out_dim, num_experts * dim)
        self.gating = nn.Linear(backbone.out_dim, dim)
        self.backbone_t, self.experts_t = copy.deepcopy(backbone), copy.deepcopy(self.experts)
        for p in [*self.backbone_t.parameters(), *self.experts_t.parameters()]:
            p.requires_grad = False  # the teacher moves by EMA only
        self.register_buffer("omega", max_mahalanobis_centres(num_experts, dim))  # fixed gating prototypes
        self.register_buffer("mu", F.normalize(torch.randn(num_experts, dim), dim=1))  # replaced before epoch 1
        # the K expert queues as one ν×(K·D) FIFO: row j holds one image's K teacher embeddings
        self.queue = FeatureQueue(queue_size, num_experts * dim)
        with torch.no_grad():  # unit vectors per expert, not per row
            self.queue.features.copy_(F.normalize(self.queue.features.view(queue_size, num_experts, dim), dim=2).flatten(1))
        if online_mu:  # mu_update=batch_ema: the running sums S, and what the epoch log compares against
            self.register_buffer("mu_sums", torch.zeros(num_experts, dim))
            self.register_buffer("mu_at_epoch", self.mu.clone())  # μ when the current epoch began
            self.register_buffer("wins", torch.zeros(num_experts))  # posterior argmax counts of the epoch's batches

    def student(self, x: torch.Tensor, x_gating: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """f (B×K×D) and g (B×D), normalised; g from ``x_gating`` when given, else from the same pass."""
        h = self.backbone(x)
        f = F.normalize(self.experts(h).view(len(x), self.k, self.dim), dim=2)
        hg = h if x_gating is None else self.backbone(x_gating)
        return f, F.normalize(self.gating(hg), dim=1)

    def teacher(self, x: torch.Tensor) -> torch.Tensor:
        """v (B×K×D), normalised."""
        return F.normalize(self.experts_t(self.backbone_t(x)).view(len(x), self.k, self.dim), dim=2)

    def queued(self) -> torch.Tensor:
        """The queues as ν×K×D (a view: clone it before the queue is pushed if autograd needs it)."""
        return self.queue.features.view(len(self.queue), self.k, self.dim)


# --- the method -------------------------------------------------------------------------------


MU_UPDATES = ("full", "batch_ema")  # method.mu_update: Eq. 13 over the whole set each epoch | online from the batches


class MiCE(DeepMethod):
    """MiCE with linear expert and gating heads on a shared backbone (the official design)."""

    own_assignment = True  # cluster=own: the posterior argmax

    views_needed = 2  # student and teacher; a third view, when the recipe makes one, feeds the gating

    def __init__(
        self,
        num_clusters: Optional[int] = None,
        kmeans_restarts: int = 3,
        queue_size: int = 16384,
        momentum: float = 0.999,
        temperature: float = 1.0,
        gating_temperature: float = 1.0,
        feature_dim: int = 128,
        mu_update: str = "full",
        mu_momentum: float = 0.99,
    ) -> None:
        super().__init__(num_clusters, kmeans_restarts)
        require_positive("method.queue_size", queue_size)
        require_positive("method.temperature", temperature)
        require_positive("method.gating_temperature", gating_temperature)
        require_positive("method.feature_dim", feature_dim)
        if not 0.0 <= momentum < 1.0:
            raise ConfigError("method.momentum", f"{momentum} is outside [0, 1); MiCE's teacher uses 0.999")
        if mu_update not in MU_UPDATES:
            raise ConfigError("method.mu_update", f"{mu_update!r} is not one of {', '.join(MU_UPDATES)} (full: the paper's Eq. 13 each epoch)")
        if not 0.0 <= mu_momentum < 1.0:
            raise ConfigError("method.mu_momentum", f"{mu_momentum} is outside [0, 1)")
        self.mu_update, self.mu_momentum = mu_update, mu_momentum
        self.queue_size, self.momentum = queue_size, momentum
        self.temperature, self.gating_temperature, self.feature_dim = temperature, gating_temperature, feature_dim
        self.num_experts = num_clusters or 0  # set from the dataset in fit_predict when null

    def fit_predict(self, data: ImageDataset, ctx: RunContext) -> Prediction:
        self.configure_clusters(self.clusters_for(data))  # one expert per cluster
        if self.feature_dim < self.num_experts - 1:
            raise ConfigError("method.feature_dim", f"{self.feature_dim} dimensions cannot hold {self.num_experts} Max-Mahalanobis gating "
                                                    f"centres; use at least {self.num_experts - 1}")
        return super().fit_predict(data, ctx)

    def setup(self, backbone: nn.Module, shape: InputShape) -> nn.Module:
        return MiCENet(backbone, self.num_experts, self.feature_dim, self.queue_size, online_mu=self.mu_update == "batch_ema")

    def log_probs(self, f: torch.Tensor, v: torch.Tensor, g: torch.Tensor, queue: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log p(z|x) and log p(y|x,z), B×K each, in fp32 (1 + ν-way softmaxes lose too much in bf16)."""
        net: MiCENet = self.model  # type: ignore[assignment]
        with torch.autocast(device_type=f.device.type, enabled=False):
            log_prior = gating_log_prior(g.float(), net.omega, self.gating_temperature)
            log_lik = expert_log_likelihood(f.float(), v.float(), queue.float(), net.mu, self.temperature)
        return log_prior, log_lik

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        net: MiCENet = self.model  # type: ignore[assignment]
        x_gating = batch.views[2] if len(batch.views) > 2 else None  # the official code's third view
        f, g = net.student(batch.views[0], x_gating)
        with torch.no_grad():
            momentum_update(nn.ModuleList([net.backbone_t, net.experts_t]), nn.ModuleList([net.backbone, net.experts]), self.momentum)
            v = net.teacher(batch.views[1])
        queue = net.queued().clone()  # negatives from before this batch; the push below is in place
        log_prior, log_lik = self.log_probs(f, v, g, queue)
        loss, q, parts = mice_elbo(log_prior, log_lik)
        v_all = D.all_gather(v.float())
        net.queue.push(v_all.flatten(1))  # every rank enqueues the global batch: queues stay equal
        if self.mu_update == "batch_ema":  # after the step's loss, as the queue: this batch scored against the old μ
            with torch.no_grad():
                q_all = D.all_gather(q.float())  # the global batch: μ stays equal on every rank
                sums, mu = expert_prototypes_ema(net.mu_sums, q_all, v_all, self.mu_momentum)
                net.mu_sums.copy_(sums)
                net.mu.copy_(mu)
                net.wins += torch.bincount(q_all.argmax(1), minlength=net.k).float()
        return {"loss": loss, **parts}

    @torch.no_grad()
    def _posterior_of(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q(z|x, y), p(z|x) and v for un-augmented images (x¹ = x² = x³ = x)."""
        net: MiCENet = self.model  # type: ignore[assignment]
        f, g = net.student(x)
        v = net.teacher(x)
        log_prior, log_lik = self.log_probs(f, v, g, net.queued())
        return posterior(log_prior, log_lik), log_prior.exp(), v.float()

    def on_epoch_start(self, ctx: EpochContext) -> Optional[dict[str, float]]:
        """The closed-form μ update over the whole training set (N×K×D floats pass through).

        With ``mu_update=batch_ema`` nothing is computed here: the log gets μ's drift over the
        previous epoch's steps and the experts that won a training image's posterior in it."""
        net: MiCENet = self.model  # type: ignore[assignment]
        k, d = net.k, net.dim
        if self.mu_update == "batch_ema":
            log: dict[str, float] = {}
            if ctx.epoch > 0:
                log = {"mu_shift": float(1.0 - (net.mu * net.mu_at_epoch).sum(1).mean()), "experts_used": float(net.wins.gt(0).sum())}
            net.mu_at_epoch.copy_(net.mu)
            net.wins.zero_()
            return log

        def weighted(x: torch.Tensor) -> torch.Tensor:  # per image: q_nk v_{n,k} (K·D) and q_n (K)
            q, _, v = self._posterior_of(x)
            return torch.cat([(q[:, :, None] * v).flatten(1), q], dim=1)

        out = ctx.embed_all(weighted)  # N×(K·D + K), the same on every rank
        sums, q = out[:, : k * d].view(-1, k, d).sum(0), out[:, k * d :]
        new = F.normalize(sums, dim=1)
        shift = float(1.0 - (new * net.mu).sum(1).mean())
        net.mu.copy_(new)
        used = int(torch.bincount(q.argmax(1), minlength=k).gt(0).sum())
        return {"mu_shift": shift, "experts_used": float(used)}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """[q(z|x, y) | p(z|x)]: N×2K, what ``predict`` needs (and the plots' embedding)."""
        q, prior, _ = self._posterior_of(x)
        return torch.cat([q, prior], dim=1)

    def predict(self, features: torch.Tensor, k: int, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
        """Posterior argmax; the gating's argmax is scored beside it (``gating_acc``...)."""
        q, prior = features[:, : self.num_experts], features[:, self.num_experts :]
        net: MiCENet = self.model  # type: ignore[assignment]
        clusters = posterior_state(self.num_experts, gating_centres=net.omega, expert_prototypes=net.mu)
        ids, confidence = assign_clusters(clusters, features)
        return ids, {"alternatives": {"gating": prior.argmax(1).cpu().numpy()}, "clusters_used": int(len(np.unique(ids))),
                     "clusters": clusters, "confidence": confidence}

    def configure_clusters(self, k: int) -> None:
        self.num_experts = k
