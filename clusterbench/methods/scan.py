"""SCAN's two training steps on a trained (pretext) method (Van Gansbeke et al., ECCV 2020,
"SCAN: Learning to Classify Images without Labels"). ``clusterbench.stages.scan`` runs them,
each as one call of the shared engine, after the method's own training:

1. **Clustering step** (§3.1). Every image's k nearest neighbours are mined once in the
   pretext feature space. A batch holds anchors and, for each, one neighbour drawn among its
   k (or the anchor itself: the authors' code draws from k + 1, self included), both
   augmented. Linear heads on the network's features output K-way softmaxes p, trained with
   −(1/B) Σ log⟨p(anchor), p(neighbour)⟩ − λ·H(mean p) (Eq. 2) summed over the heads; the
   network is trained too unless ``update_head_only``. At the end each head's loss is computed
   on the un-augmented images with all their neighbours (the authors' ``scan_evaluate``) and
   the lowest keeps its place.
2. **Self-labelling** (§3.2). The kept head's confident predictions (max p > 0.99 on the
   un-augmented image, in training mode and without gradient, as in the authors' code) are
   labels for the strongly augmented view: cross-entropy weighted against frequent classes.

Both steps cluster by the head's argmax: clusters.npz holds it as a ``linear`` state on the
pretext method's ``embed`` features, so ``clusterbench-predict`` assigns new images with it.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from clusterbench.cluster.state import assign as assign_clusters
from clusterbench.cluster.state import linear_state
from clusterbench.errors import ConfigError
from clusterbench.methods.deep import Batch, DeepMethod, InputShape, eval_mode
from clusterbench.methods.losses import confident_cross_entropy, scan_loss


class HeadedNet(nn.Module):
    """The pretext method's networks (``trunk``, trained on or frozen) and linear heads on its
    ``embed`` features. ``trunk`` is the very module the method trained: what these steps
    change, the run exports (model.pt)."""

    def __init__(self, pretext: DeepMethod, heads: nn.ModuleList) -> None:
        super().__init__()
        self.trunk = pretext.model
        self.heads = heads
        self._embed = pretext.embed  # reads self.trunk (the method's model)

    def features(self, x: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        if not frozen:
            return self._embed(x)
        with torch.no_grad(), eval_mode(self.trunk):  # no BatchNorm updates: the authors' head-only mode
            return self._embed(x)

    def logits(self, x: torch.Tensor, frozen: bool = False) -> list[torch.Tensor]:
        f = self.features(x, frozen)  # B×D
        return [head(f) for head in self.heads]  # each B×K


def new_heads(dim: int, k: int, count: int, seed: int) -> nn.ModuleList:
    """``count`` linear heads D → K, initialised from ``seed`` alone (not from whatever the
    pretext training left in the global RNG), so a stage re-run on a finished run's folder
    starts from the same heads as in-run."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.ModuleList(nn.Linear(dim, k) for _ in range(count))


def head_losses(probs: list[torch.Tensor], neighbors: torch.Tensor, select_entropy_weight: float) -> list[float]:
    """Each head's SCAN loss over the whole set: −mean log⟨p_i, p_j⟩ over every image i and
    each j of its neighbour row (self included), minus ``select_entropy_weight`` × the entropy
    of the mean prediction (the authors' ``scan_evaluate``: weight 1)."""
    out = []
    for p in probs:  # N×K
        similarity = (p[:, None, :] * p[neighbors]).sum(-1)  # N×(k+1)
        consistency = -similarity.clamp_min(1e-45).log().clamp_min(-100.0).mean()
        mean = p.mean(0)
        entropy = -(mean.clamp_min(1e-8).log() * mean).sum()
        out.append(float(consistency - select_entropy_weight * entropy))
    return out


class SCANClustering(DeepMethod):
    """Step 1: clustering heads trained with the SCAN loss on (anchor, neighbour) pairs."""

    views_needed = 1
    rows_per_image = 2  # an anchor and one of its neighbours, side by side in the batch
    unused_parameters = True  # the pretext method's own heads and key encoders get no gradient here

    def __init__(self, pretext: DeepMethod, neighbors: torch.Tensor, num_clusters: int, feature_dim: int, num_heads: int = 10,
                 entropy_weight: float = 5.0, select_entropy_weight: float = 1.0, update_head_only: bool = False) -> None:
        super().__init__(num_clusters)
        self.pretext = pretext
        self.neighbors = neighbors.cpu()  # N×(k+1), each row's own index first
        self.feature_dim, self.num_heads = feature_dim, num_heads
        self.entropy_weight, self.select_entropy_weight = entropy_weight, select_entropy_weight
        self.update_head_only = update_head_only

    def setup(self, backbone: nn.Module, shape: InputShape) -> nn.Module:
        if self.update_head_only:
            for p in self.pretext.model.parameters():
                p.requires_grad_(False)
        self.model = HeadedNet(self.pretext, new_heads(self.feature_dim, int(self.num_clusters), self.num_heads, self.seed))
        return self.model

    def check_batch(self, per_rank: int) -> None:
        if per_rank % 2:
            raise ConfigError("cluster.batch_size", f"each rank's batch of {per_rank} rows does not split into anchor/neighbour pairs")

    def sample_order(self, num_images: int, count: int, gen: torch.Generator) -> torch.Tensor:
        """``count`` rows: anchors in a fresh random order, each followed by one of its
        neighbours drawn uniformly from its row (self included, as the authors' dataset does)."""
        anchors = torch.randperm(num_images, generator=gen)[: count // 2]
        pick = torch.randint(self.neighbors.shape[1], (len(anchors),), generator=gen)
        partners = self.neighbors[anchors, pick]
        return torch.stack([anchors, partners], dim=1).reshape(-1)

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        net: HeadedNet = self.model  # type: ignore[assignment]
        logits = net.logits(batch.views[0], frozen=self.update_head_only)  # anchors at even rows, neighbours at odd
        parts = [scan_loss(z[0::2], z[1::2], self.entropy_weight) for z in logits]
        total = torch.stack([p[0] for p in parts]).sum()  # every head learns; the authors sum over heads
        return {"loss": total, "consistency": torch.stack([p[1] for p in parts]).mean().detach(),
                "entropy": torch.stack([p[2] for p in parts]).mean().detach()}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.pretext.embed(x)

    @torch.no_grad()
    def predict(self, features: torch.Tensor, k: int, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
        """The lowest-loss head's argmax on the un-augmented images' features."""
        net: HeadedNet = self.model  # type: ignore[assignment]
        x = features.float()
        probs = [torch.softmax(head(x), dim=1) for head in net.heads]
        losses = head_losses(probs, self.neighbors.to(x.device), self.select_entropy_weight)
        best = int(np.argmin(losses))
        state = linear_state(net.heads[best].weight, net.heads[best].bias)
        ids, confidence = assign_clusters(state, x)
        return ids, {"scan_head": best, "scan_head_loss": losses[best], "head_losses": losses, "clusters": state, "confidence": confidence}

    def method_state(self) -> dict[str, Any]:
        return {"neighbors": self.neighbors}

    def load_method_state(self, state: dict[str, Any]) -> None:
        self.neighbors = state["neighbors"].cpu()


class SelfLabel(DeepMethod):
    """Step 2: fine-tune network and the kept head on its own confident predictions."""

    views_needed = 1
    plain_view = True  # the confident labels come from the un-augmented image

    unused_parameters = True  # every pretext parameter is trainable, but only the embedding's get gradients

    def __init__(self, pretext: DeepMethod, head: nn.Linear, num_clusters: int, threshold: float = 0.99, class_balance: bool = True) -> None:
        super().__init__(num_clusters)
        self.pretext, self.head = pretext, head
        self.threshold, self.class_balance = threshold, class_balance

    def setup(self, backbone: nn.Module, shape: InputShape) -> nn.Module:
        for p in self.pretext.model.parameters():  # a head-only SCAN step froze them; this step trains all
            p.requires_grad_(True)
        self.model = HeadedNet(self.pretext, nn.ModuleList([self.head]))
        return self.model

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        net: HeadedNet = self.model  # type: ignore[assignment]
        assert batch.plain is not None
        with torch.no_grad():
            weak = net.logits(batch.plain)[0]  # B×K
        strong = net.logits(batch.views[0])[0]
        loss, confident = confident_cross_entropy(weak, strong, self.threshold, self.class_balance)
        return {"loss": loss, "confident": confident.float() / len(weak)}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.pretext.embed(x)

    @torch.no_grad()
    def predict(self, features: torch.Tensor, k: int, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
        state = linear_state(self.head.weight, self.head.bias)
        ids, confidence = assign_clusters(state, features.float())
        assert confidence is not None
        return ids, {"confident": float((confidence > self.threshold).mean()), "clusters": state, "confidence": confidence}


def kept_head(step: SCANClustering, index: int) -> nn.Linear:
    """A copy of the chosen head, to self-label with (the others are dropped)."""
    net: HeadedNet = step.model  # type: ignore[assignment]
    chosen = net.heads[index]
    head = nn.Linear(chosen.in_features, chosen.out_features).to(chosen.weight.device)
    head.load_state_dict(chosen.state_dict())
    return head


def feature_dim(pretext: DeepMethod, embeddings: Optional[np.ndarray], shape: InputShape, device: torch.device) -> int:
    """The width of ``pretext.embed``'s features (from the run's final embedding when at hand)."""
    if embeddings is not None:
        return int(embeddings.shape[1])
    with torch.no_grad(), eval_mode(pretext.model):
        return int(pretext.embed(torch.zeros(2, shape.channels, shape.size, shape.size, device=device)).shape[1])
