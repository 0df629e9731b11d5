"""DeepCluster (Caron et al., ECCV 2018) and DeepCluster-v2 (Caron et al., NeurIPS 2020, the SwAV paper).

``method.version=v1`` — DeepCluster. Each epoch t:

1. x_n = f_θ(image_n)                 backbone features of every image, un-augmented, eval mode
2. x_n ← PCA-whiten(x)  to ``pca_dim``  (eigen-power −1/2: unit variance per component)
3. x_n ← x_n / ‖x_n‖                   L2 normalisation
4. y = k-means(x, K)                   faiss, 20 iterations; K ≫ classes (over-clustering)
5. re-seed empty clusters               move an empty centroid next to a populated one, split it
6. re-initialise the top layer W        W ~ N(0, 0.01²), b = 0, its momentum forgotten
7. sample images uniformly over the non-empty clusters (one giant cluster cannot dominate)
8. steps: L = CE(W·g(f_θ(aug(image_n))), y_n)

``method.version=v2`` — DeepCluster-v2 (the SwAV repo's main_deepclusterv2.py):

- z = normalise(h(f_θ(x)))            projection head (Linear-BN-ReLU-Linear), unit-norm z
- a memory bank holds z of every image for each of the first ``crops_for_assign`` crops,
  written at the batch's indices by every training step (filled once before epoch 1)
- each epoch start, per head h: spherical k-means (random init, 10 iterations) on memory bank
  h mod ``crops_for_assign``; the prototypes C_h := the centroids (frozen: never trained by
  gradient); assignments y_h := the nearest centroid
- L = mean_h CE(z·C_hᵀ / τ, y_h), over every crop (global and local) of the batch

Under DDP the features are gathered (``ctx.embed_all``), the bank is updated with every rank's
batch, and k-means runs on rank 0 and is broadcast: every rank trains on the same labels.

The final clusters: k-means (K = the class count) on the L2-normalised backbone features.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from clusterbench import distributed as D
from clusterbench.backbones.heads import projection_head
from clusterbench.cluster.kmeans import assign, kmeans, split_empty_clusters
from clusterbench.errors import ConfigError
from clusterbench.health import cluster_size_shares
from clusterbench.methods.base import require_positive
from clusterbench.methods.deep import Batch, DeepMethod, EpochContext, InputShape
from clusterbench.metrics import contingency, nmi_from

VERSIONS = ("v1", "v2")
KMEANS_ITERS = {"v1": 20, "v2": 10}  # faiss niter in DeepCluster's code; the SwAV repo's own loop
HEAD_LAYERS = {"v1": 1, "v2": 2}  # v1: one Linear to K (the top layer); v2: the SwAV projection MLP
TOP_INIT_STD = 0.01  # DeepCluster's top layer: weight ~ N(0, 0.01²), bias 0


# --- the pieces, each testable by hand ------------------------------------------------


def pca_whiten(x: torch.Tensor, dim: int, eps: float = 1e-5) -> torch.Tensor:
    """Project the rows of ``x`` (N×D) on their top ``dim`` principal axes, each scaled to unit
    variance (faiss's PCAMatrix with eigen_power −0.5, as DeepCluster's ``preprocess_features``).

    ``dim`` is capped at D. Computed in float64 (the covariance of ReLU features is badly
    conditioned); ``eps`` keeps near-zero-variance axes from blowing up.
    """
    n, d = x.shape
    dim = min(dim, d)
    work = x.double() if x.device.type != "mps" else x.float()
    centred = work - work.mean(0, keepdim=True)
    cov = centred.T @ centred / max(n - 1, 1)
    eigval, eigvec = torch.linalg.eigh(cov)  # ascending
    eigval, eigvec = eigval.flip(0)[:dim], eigvec.flip(1)[:, :dim]
    return (centred @ (eigvec / (eigval.clamp_min(0) + eps).sqrt())).float()


def reseed_empty_clusters(x: torch.Tensor, centroids: torch.Tensor, labels: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Leave no cluster empty: an empty centroid is moved next to a populated one (faiss's split
    rule: the donor drawn ∝ size − 1, the two copies pushed apart by ±1/1024), and the donor's
    points are shared between the two by nearest centroid.

    Returns the new centroids and labels (copies) and how many clusters were empty. Points that
    coincide cannot be separated by a split; then one point is handed to the empty cluster.
    """
    centroids, labels = centroids.clone(), labels.clone()
    k = centroids.shape[0]
    counts = torch.bincount(labels, minlength=k)
    empty_before = int((counts == 0).sum())
    for _ in range(k):  # each round refills every empty cluster; a second one is rare
        if not bool((counts == 0).any()):
            break
        before = centroids.clone()
        split_empty_clusters(centroids, counts.clone(), gen)
        touched = torch.nonzero((centroids != before).any(1)).flatten()  # the refilled and their donors
        if len(touched) == 0:
            break
        members = torch.isin(labels, touched)
        labels[members] = touched[assign(x[members].float(), centroids[touched].float())[0]]
        new_counts = torch.bincount(labels, minlength=k)
        if torch.equal(new_counts, counts):
            break  # the split separated nothing (coinciding points)
        counts = new_counts
    for j in torch.nonzero(counts == 0).flatten().tolist():  # last resort: hand over one point
        donor = int(counts.argmax())
        if int(counts[donor]) < 2:
            break
        i = int(torch.nonzero(labels == donor)[0])
        labels[i], centroids[j] = j, x[i].to(centroids.dtype)
        counts[donor] -= 1
        counts[j] = 1
    return centroids, labels, empty_before


def uniform_cluster_order(labels: torch.Tensor, count: int, gen: torch.Generator) -> torch.Tensor:
    """``count`` dataset indices drawn uniformly over the non-empty clusters of ``labels``
    (DeepCluster's UnifLabelSampler), shuffled, from ``gen`` only.

    Every non-empty cluster gets ⌊count / m⌋ or one more (the extras go to randomly drawn
    clusters); a cluster is sampled without replacement when it has enough images, with
    replacement when it is smaller. Negative labels (no cluster) are never drawn.
    """
    labels = labels.detach().cpu().long()
    valid = torch.nonzero(labels >= 0).flatten()
    if len(valid) == 0:
        raise ValueError("no image has a cluster to sample from")
    lab = labels[valid]
    order = torch.argsort(lab, stable=True)
    sizes = torch.bincount(lab)
    groups = [valid[g] for g in torch.split(order, sizes.tolist()) if len(g)]
    m = len(groups)
    base, extra = divmod(count, m)
    per = torch.full((m,), base, dtype=torch.long)
    per[torch.randperm(m, generator=gen)[:extra]] += 1
    parts = []
    for members, p in zip(groups, per.tolist()):
        if p <= len(members):
            parts.append(members[torch.randperm(len(members), generator=gen)[:p]])
        else:
            parts.append(members[torch.randint(len(members), (p,), generator=gen)])
    out = torch.cat(parts)
    return out[torch.randperm(len(out), generator=gen)]


class Sobel(nn.Module):
    """DeepCluster's fixed input filter: greyscale (RGB mean), then the two Sobel gradients.

    Removes colour, which the paper found k-means latches on to. Not trained (buffers)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("grey", torch.full((1, channels, 1, 1), 1.0 / channels))
        gx = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
        self.register_buffer("kernels", torch.stack([gx, gx.T])[:, None])  # 2×1×3×3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(x, self.grey.to(x.dtype)), self.kernels.to(x.dtype), padding=1)


class SobelBackbone(nn.Module):
    """Sobel → the backbone, whose first convolution now takes the 2 gradient channels."""

    def __init__(self, backbone: nn.Module, channels: int) -> None:
        super().__init__()
        for name, module in backbone.named_modules():
            if isinstance(module, nn.Conv2d) and module.in_channels == channels:
                parent = backbone.get_submodule(name.rpartition(".")[0]) if "." in name else backbone
                setattr(parent, name.rpartition(".")[2], nn.Conv2d(2, module.out_channels, module.kernel_size, module.stride, module.padding,
                                                                   module.dilation, module.groups, module.bias is not None, module.padding_mode))
                break
        else:
            raise ConfigError("method.sobel", f"{getattr(backbone, 'name', type(backbone).__name__)} has no convolution to feed the Sobel "
                              "gradients to; use a conv backbone or set method.sobel=false")
        self.sobel, self.net = Sobel(channels), backbone
        self.out_dim = backbone.out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.sobel(x))


# --- the networks -------------------------------------------------------------------------


class DeepClusterNet(nn.Module):
    """Backbone, head (v1: the classifier whose last Linear is the top layer; v2: the projection
    MLP), and the per-image state as buffers, so that a checkpoint holds it:

    - ``labels``: H×N pseudo-labels of the current epoch (−1 before the first clustering);
    - ``prototypes``: H×K×d, v2's frozen prototype classifiers (the k-means centroids);
    - ``bank``: C×N×d, v2's memory of z per crop used for the assignments;
    - ``bank_filled``: whether the bank was initialised.

    The per-image buffers are sized at the first epoch (N is not known at setup); loading a
    checkpoint resizes them to the saved shapes.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head
        self.register_buffer("labels", torch.zeros(0, 0, dtype=torch.long))
        self.register_buffer("prototypes", torch.zeros(0, 0, 0))
        self.register_buffer("bank", torch.zeros(0, 0, 0))
        self.register_buffer("bank_filled", torch.zeros((), dtype=torch.bool))

    def top_layer(self) -> nn.Linear:
        return self.head if isinstance(self.head, nn.Linear) else self.head[-1]  # type: ignore[index,return-value]

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401
        for name in ("labels", "prototypes", "bank"):
            saved = state_dict.get(prefix + name)
            if saved is not None and saved.shape != getattr(self, name).shape:
                setattr(self, name, torch.empty(saved.shape, dtype=saved.dtype, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class DeepCluster(DeepMethod):
    """DeepCluster (v1: PCA-whitened k-means + re-initialised classifier) or DeepCluster-v2
    (spherical k-means on a memory bank + frozen prototype classifier)."""

    def __init__(
        self,
        num_clusters: Optional[int] = None,
        kmeans_restarts: int = 3,
        version: str = "v1",
        num_prototypes: int = 100,
        num_heads: int = 1,
        pca_dim: Optional[int] = 256,
        kmeans_iters: Optional[int] = None,
        kmeans_backend: str = "faiss",
        head_layers: Optional[int] = None,
        head_hidden: int = 512,
        head_batch_norm: bool = True,
        feature_dim: int = 128,
        temperature: float = 0.1,
        crops_for_assign: int = 2,
        uniform_sampling: bool = True,
        sobel: bool = False,
    ) -> None:
        super().__init__(num_clusters, kmeans_restarts)
        version = str(version)
        if version not in VERSIONS:
            raise ConfigError("method.version", f"'{version}' is not a DeepCluster version; use v1 or v2")
        require_positive("method.num_heads", num_heads)
        require_positive("method.pca_dim", pca_dim, allow_none=True)
        require_positive("method.kmeans_iters", kmeans_iters, allow_none=True)
        require_positive("method.head_layers", head_layers, allow_none=True)
        require_positive("method.feature_dim", feature_dim)
        require_positive("method.temperature", temperature)
        require_positive("method.crops_for_assign", crops_for_assign)
        if num_prototypes < 2:
            raise ConfigError("method.num_prototypes", f"{num_prototypes} pseudo-classes cannot train a classifier; use 2 or more (the paper: 10× the classes or more)")
        if version == "v1" and num_heads != 1:
            raise ConfigError("method.num_heads", f"{num_heads} heads: v1 trains one classifier; use 1, or method.version=v2")
        kmeans_backend = str(getattr(kmeans_backend, "value", kmeans_backend))
        if kmeans_backend not in ("faiss", "torch"):
            raise ConfigError("method.kmeans_backend", f"'{kmeans_backend}' is not a k-means backend; use faiss or torch")
        self.version, self.num_prototypes, self.num_heads = version, num_prototypes, num_heads
        self.pca_dim, self.kmeans_backend = pca_dim, kmeans_backend
        self.kmeans_iters = kmeans_iters or KMEANS_ITERS[version]
        self.head_layers = head_layers or HEAD_LAYERS[version]
        self.head_hidden, self.head_batch_norm, self.feature_dim = head_hidden, head_batch_norm, feature_dim
        self.temperature, self.crops_for_assign = temperature, crops_for_assign
        self.uniform_sampling, self.sobel = uniform_sampling, sobel
        # v1 trains on one augmented view; v2 on every crop, the first crops_for_assign fill the bank
        self.views_needed = 1 if version == "v1" else crops_for_assign

    @property
    def net(self) -> DeepClusterNet:
        return self.model  # type: ignore[return-value]

    def setup(self, backbone: nn.Module, shape: InputShape) -> nn.Module:
        if self.sobel:
            backbone = SobelBackbone(backbone, shape.channels)
        keys = {"hidden_dim": "method.head_hidden", "num_layers": "method.head_layers"}
        if self.version == "v1":  # the classifier: (MLP →) top Linear to K, re-initialised every epoch
            head = projection_head(backbone.out_dim, self.head_hidden, self.num_prototypes, num_layers=self.head_layers,
                                   batch_norm=self.head_batch_norm, keys={**keys, "out_dim": "method.num_prototypes"})
        else:  # SwAV's projection head: Linear → BN → ReLU → Linear to feature_dim
            head = projection_head(backbone.out_dim, self.head_hidden, self.feature_dim, num_layers=self.head_layers,
                                   batch_norm=self.head_batch_norm, keys={**keys, "out_dim": "method.feature_dim"})
        return DeepClusterNet(backbone, head)

    # --- the E-step -----------------------------------------------------------------------

    def on_epoch_start(self, ctx: EpochContext) -> Optional[dict[str, float]]:
        net = self.net
        if self.num_prototypes > ctx.num_images:
            raise ConfigError("method.num_prototypes", f"{self.num_prototypes} clusters but only {ctx.num_images} training images; lower it")
        if net.labels.numel() == 0:
            net.labels = torch.full((self.num_heads, ctx.num_images), -1, dtype=torch.long, device=ctx.device)
        previous = net.labels[0].clone()
        if self.version == "v1":
            log = self._cluster_v1(ctx)
        else:
            log = self._cluster_v2(ctx)
        if bool((previous >= 0).all()):  # the paper's stability curve: NMI(y_{t−1}, y_t)
            log["nmi_prev"] = nmi_from(contingency(previous.cpu().numpy(), net.labels[0].cpu().numpy()))
        return log

    def _cluster_v1(self, ctx: EpochContext) -> dict[str, float]:
        net = self.net
        n, k = ctx.num_images, self.num_prototypes
        features = ctx.embed_all(net.backbone)  # N×D, gathered: the same on every rank
        labels = torch.empty(n, dtype=torch.long, device=ctx.device)
        stats = torch.zeros(4, device=ctx.device)  # k-means loss per image, clusters re-seeded, empty and largest shares
        if self.dist.is_main:  # computed once, broadcast: every rank trains on the same labels
            x = features
            if self.pca_dim is not None:
                x = pca_whiten(x, self.pca_dim)
            x = F.normalize(x, dim=1)
            seed = self._epoch_seed(ctx.epoch)
            result = kmeans(x, k, niter=self.kmeans_iters, seed=seed, backend=self.kmeans_backend, init="random", max_points_per_centroid=None)
            gen = torch.Generator().manual_seed(seed)
            _, found, empty = reseed_empty_clusters(x, result.centroids, result.assignments, gen)
            labels.copy_(found.to(ctx.device))
            stats[0], stats[1] = result.inertia / n, empty
            stats[2:] = torch.tensor(cluster_size_shares(result.assignments, k))  # k-means' own answer, before the re-seeding
        D.broadcast_(labels)
        D.broadcast_(stats)
        net.labels[0] = labels
        self._reset_top_layer(ctx)
        return {"kmeans_loss": float(stats[0]), "empty_reseeded": float(stats[1]), "estep_empty_share": float(stats[2]),
                "estep_largest_share": float(stats[3])}

    def _reset_top_layer(self, ctx: EpochContext) -> None:
        """A fresh top layer for the new pseudo-classes (their order is arbitrary), as the paper's
        code: weight ~ N(0, 0.01²), bias 0; its optimiser momentum is dropped with it."""
        top = self.net.top_layer()
        gen = torch.Generator().manual_seed(self._epoch_seed(ctx.epoch) + 1)  # the same on every rank and on resume
        with torch.no_grad():
            top.weight.copy_(torch.randn(top.weight.shape, generator=gen) * TOP_INIT_STD)
            top.bias.zero_()
        if ctx.optimizer is not None:
            for p in (top.weight, top.bias):
                ctx.optimizer.state.pop(p, None)

    def _cluster_v2(self, ctx: EpochContext) -> dict[str, float]:
        net = self.net
        n, k, h_count = ctx.num_images, self.num_prototypes, self.num_heads
        if not bool(net.bank_filled):  # init_memory: one pass over the data before the first epoch
            z = ctx.embed_all(self._project)  # N×d
            net.bank = z[None].repeat(self.crops_for_assign, 1, 1).contiguous()
            net.bank_filled.fill_(True)
        if net.prototypes.numel() == 0:
            net.prototypes = torch.zeros(h_count, k, self.feature_dim, device=ctx.device)
        labels = torch.empty(h_count, n, dtype=torch.long, device=ctx.device)
        centroids = torch.empty(h_count, k, self.feature_dim, device=ctx.device)
        stats = torch.zeros(4, device=ctx.device)  # mean k-means loss per image, empty clusters, worst empty and largest shares
        if self.dist.is_main:
            for h in range(h_count):
                memory = net.bank[h % self.crops_for_assign]  # the official cycles the heads over the banks
                result = kmeans(memory, k, niter=self.kmeans_iters, seed=self._epoch_seed(ctx.epoch) + 7919 * h, spherical=True,
                                backend=self.kmeans_backend, init="random", device=ctx.device, max_points_per_centroid=None)
                labels[h], centroids[h] = result.assignments.to(ctx.device), result.centroids.to(ctx.device)
                stats[0] += result.inertia / n / h_count
                stats[1] += float((torch.bincount(result.assignments, minlength=k) == 0).sum())
                empty_share, largest_share = cluster_size_shares(result.assignments, k)
                stats[2], stats[3] = max(float(stats[2]), empty_share), max(float(stats[3]), largest_share)
        D.broadcast_(labels)
        D.broadcast_(centroids)
        D.broadcast_(stats)
        net.labels.copy_(labels)
        net.prototypes.copy_(centroids)
        return {"kmeans_loss": float(stats[0]), "empty_clusters": float(stats[1]), "estep_empty_share": float(stats[2]),
                "estep_largest_share": float(stats[3])}

    def _epoch_seed(self, epoch: int) -> int:
        return (self.seed * 1_000_003 + epoch) % (2**62)

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net.head(self.net.backbone(x)).float(), dim=1)

    # --- sampling -------------------------------------------------------------------------

    def sample_order(self, num_images: int, count: int, gen: torch.Generator) -> torch.Tensor:
        if self.version == "v1" and self.uniform_sampling:
            return uniform_cluster_order(self.net.labels[0], count, gen)
        return super().sample_order(num_images, count, gen)

    # --- the training step ----------------------------------------------------------------

    def chance_loss(self) -> Optional[float]:
        """Cross-entropy over the k pseudo-classes with uniform logits."""
        return math.log(self.num_prototypes)

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        if self.version == "v1":
            return self._step_v1(batch)
        return self._step_v2(batch)

    def _step_v1(self, batch: Batch) -> dict[str, torch.Tensor]:
        net = self.net
        logits = net.head(net.backbone(batch.views[0]))
        return {"loss": F.cross_entropy(logits.float(), net.labels[0][batch.indices])}

    def _step_v2(self, batch: Batch) -> dict[str, torch.Tensor]:
        net = self.net
        views = batch.views
        if len(views) < self.crops_for_assign:
            raise ConfigError("method.crops_for_assign", f"{self.crops_for_assign} crops fill the memory bank but the batch has {len(views)} views")
        z = self._forward_crops(views)  # V·B×d, crop-major
        b = len(batch.indices)
        loss = z.new_zeros((), dtype=torch.float32)
        for h in range(self.num_heads):
            scores = z.float() @ net.prototypes[h].T / self.temperature  # the prototypes are frozen buffers
            targets = net.labels[h][batch.indices].repeat(len(views))
            loss = loss + F.cross_entropy(scores, targets, ignore_index=-1)
        loss = loss / self.num_heads
        with torch.no_grad():  # every rank writes every rank's batch: the banks stay identical
            indices = D.all_gather(batch.indices)
            for c in range(self.crops_for_assign):
                net.bank[c, indices] = D.all_gather(z[c * b : (c + 1) * b].detach().float().contiguous())
        return {"loss": loss}

    def _forward_crops(self, views: list[torch.Tensor]) -> torch.Tensor:
        """z of every crop, crops of one size through the network together (as SwAV's multi-crop
        forward, BatchNorm statistics over all of them)."""
        out, start = [], 0
        while start < len(views):
            end = start
            while end < len(views) and views[end].shape[-1] == views[start].shape[-1]:
                end += 1
            out.append(self._project(torch.cat(views[start:end])))
            start = end
        return torch.cat(out)
