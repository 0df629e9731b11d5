"""The small base of every trained method; ``clusterbench.engine`` runs its hooks.

A deep method builds its networks in ``setup`` and implements its paper's algorithm in a few
hooks; the engine owns everything else (devices, augmentation, the optimiser and schedule,
precision, DDP, checkpoints, evaluation, logging):

- ``setup(backbone, shape)``: build the networks and buffers as one ``nn.Module``;
- ``training_step(batch)``: the loss on one batch of views, ``{"loss": ..., **logged}``; a
  method with ``owns_optimizers`` (a GAN) builds its optimisers in ``configure_optimizers`` and
  steps them itself with ``self.optimize(name, loss)`` (Lightning's "manual optimisation");
- ``check_batch(per_rank)``: reject a batch size the method cannot use, before training;
- ``on_epoch_start(ctx)``: per-epoch work such as an E-step (k-means, prototype updates);
  may return numbers to log in the epoch's ``metrics.jsonl`` line;
- ``sample_order(n, count, gen)``: which images the epoch's batches hold (default: a shuffle);
- ``before_optimizer_step(step)``: e.g. zero the gradients of frozen prototypes;
- ``embed(x)``: the features the final clusters are found in (eval mode, no gradient);
- ``predict(features, k, seed)``: cluster ids (default: k-means on L2-normalised features), and
  an info dict; ``info["alternatives"] = {name: ids}`` gets scored and logged as ``name_acc``...;
- ``method_state()`` / ``load_method_state()``: state outside the module's ``state_dict``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
from torch import nn

from clusterbench.cluster import kmeans
from clusterbench.cluster.state import assign as assign_clusters
from clusterbench.cluster.state import kmeans_state
from clusterbench.data.dataset import ImageDataset
from clusterbench.distributed import DistInfo
from clusterbench.errors import ConfigError
from clusterbench.methods.base import Method, Prediction, RunContext, require_positive


@dataclass
class Batch:
    """One training step's input. ``views`` are standardised, global crops first."""

    views: list[torch.Tensor]  # each B×C×s×s float
    indices: torch.Tensor  # B dataset indices of the images (for per-image state)
    epoch: int
    step: int  # global optimiser step, from 0
    plain: Optional[torch.Tensor] = None  # B×C×H×W standardised, un-augmented (methods with ``plain_view``)
    # how many of ``views`` are global crops (the augmentation recipe's ``global_crops``), never
    # guessed from their sizes: local crops may be as large as the global ones. None: all of them
    num_global: Optional[int] = None


@dataclass
class EpochContext:
    """What an epoch-start hook may use: the whole training set and a way to embed it."""

    epoch: int
    num_images: int
    device: torch.device
    seed: int
    dist: DistInfo
    # features of every training image under ``fn`` (a no-grad map of standardised B×C×H×W
    # batches), in dataset order, gathered across ranks: N×D on ``device``
    embed_all: Callable[[Callable[[torch.Tensor], torch.Tensor]], torch.Tensor]
    # the engine's optimiser, for a method that re-initialises parameters (DeepCluster's head)
    # and must forget their momentum: ``optimizer.state.pop(p, None)``
    optimizer: Optional[torch.optim.Optimizer] = None


@dataclass(frozen=True)
class InputShape:
    channels: int
    size: int  # images are size × size
    # the run's per-channel mean and std in [0, 1] units (what ``views`` were standardised by):
    # for methods that make images themselves (InfoGAN's generator); None where not known
    mean: Optional[tuple[float, ...]] = None
    std: Optional[tuple[float, ...]] = None


class DeepMethod(Method):
    """A method with a training loop. Subclasses implement ``setup`` and ``training_step``."""

    #: the views ``training_step`` expects from the augmentation recipe
    views_needed: Optional[int] = None
    #: False: ``batch.views`` is one un-augmented (standardised) view, and no views are made
    augmented: bool = True
    #: the method assigns clusters itself (``cluster=own``: SwAV's prototypes, MiCE's posterior)
    own_assignment: bool = False
    #: also hand ``training_step`` the un-augmented batch (``batch.plain``; SCAN's self-labelling)
    plain_view: bool = False
    #: batch rows an image brings per epoch: an epoch holds ``N·rows_per_image // batch_size``
    #: steps (SCAN: 2, an anchor and one of its neighbours)
    rows_per_image: int = 1
    #: some trainable parameters get no gradient in some steps: DDP must look for them each step
    unused_parameters: bool = False
    #: the method steps optimisers of its own inside ``training_step`` (a GAN's D, then G):
    #: it builds them in ``configure_optimizers`` and calls ``self.optimize(name, loss)``
    owns_optimizers: bool = False
    #: ``embed``'s features may point anywhere: a mean pairwise cosine near 1 means they
    #: collapsed (False for probabilities, SCAE's presences, all in the positive orthant)
    signed_features: bool = True

    def __init__(self, num_clusters: Optional[int] = None, kmeans_restarts: int = 3) -> None:
        super().__init__(num_clusters)
        require_positive("method.kmeans_restarts", kmeans_restarts)
        self.kmeans_restarts = kmeans_restarts
        self.model: nn.Module = nn.Module()
        self.seed = 0  # the run's seed and ranks, set by the engine before ``setup``
        self.dist = DistInfo()

    # --- hooks -----------------------------------------------------------------------

    def setup(self, backbone: nn.Module, shape: InputShape) -> nn.Module:
        """Build the networks around ``backbone``; return them as one module (also ``self.model``)."""
        raise NotImplementedError

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def check_batch(self, per_rank: int) -> None:
        """Reject a per-device batch size the method cannot use, before any training."""

    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        """(``owns_optimizers``) the method's named optimisers over ``self.model``'s parameters,
        at the scheduled learning rate ``lr`` (``trainer.lr``); a param group's ``lr_scale``
        makes its rate ``lr_scale`` × the schedule's at every step."""
        raise NotImplementedError(f"{type(self).__name__} owns its optimisers but does not build them")

    def optimize(self, name: str, loss: torch.Tensor) -> None:
        """(``owns_optimizers``) inside ``training_step``: backward of ``loss`` and one step of
        optimiser ``name``, with everything the engine gives the one-optimiser methods: its
        gradients zeroed first, the fp16 loss scale, the cross-rank average, clipping. The
        engine binds it (``clusterbench.optim.ManualSteps``) before the first step."""
        raise RuntimeError(f"{type(self).__name__}.optimize is bound by the engine; call it from training_step")

    def on_epoch_start(self, ctx: EpochContext) -> Optional[dict[str, float]]:
        """Per-epoch work before the first step (an E-step); nothing by default.

        Runs with the model in training mode; ``ctx.embed_all`` switches to evaluation mode
        inside. Numbers returned are logged in the epoch's line of ``metrics.jsonl``."""
        return None

    def sample_order(self, num_images: int, count: int, gen: torch.Generator) -> torch.Tensor:
        """The dataset indices of this epoch's batches, in order, ``count`` of them (whole
        batches); drawn from ``gen`` (a CPU generator, identical on every rank and restored on
        resume). Default: a fresh random permutation. DeepCluster samples uniformly over clusters."""
        return torch.randperm(num_images, generator=gen)[:count]

    def before_optimizer_step(self, step: int) -> None:
        """Called after the gradients are ready and before the optimiser uses them."""

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Features of standardised images for the final clustering: the backbone's output."""
        return self.model.backbone(x)

    def predict(self, features: torch.Tensor, k: int, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
        """Cluster ids from features: k-means on L2-normalised features (cosine geometry, as the
        contrastive losses train it).

        ``info["clusters"]`` is the fitted clustering as arrays (``clusterbench.cluster.state``):
        it is written to ``clusters.npz`` and assigns new images; ``info["confidence"]`` (N) is
        each assignment's confidence where the clustering has one."""
        result = kmeans(torch.nn.functional.normalize(features.float(), dim=1), k, restarts=self.kmeans_restarts, seed=seed)
        return result.assignments.cpu().numpy(), {"inertia": result.inertia, "clusters": kmeans_state(result.centroids, normalize=True)}

    def assign(self, features: torch.Tensor, clusters: dict[str, Any]) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Ids (and confidences) of new images' ``embed`` features under a saved ``clusters``
        state: what ``clusterbench-predict`` runs. Equal to ``predict``'s ids on the same features."""
        return assign_clusters(clusters, features)

    def samples(self) -> Optional[Any]:
        """Images the trained model generates, for ``samples.png`` (rank 0, eval mode, after
        training): ``(grid R×n×C×H×W uint8, row label format, title)``; None: the method makes none."""
        return None

    def chance_loss(self) -> Optional[float]:
        """The loss of a network that has learnt nothing (uniform logits: log of their number),
        where the method's loss has one: the training-health check flags a loss stuck there."""
        return None

    def configure_clusters(self, k: int) -> None:
        """Fix the number of clusters before ``setup`` (methods whose networks depend on it)."""

    def method_state(self) -> dict[str, Any]:
        """Checkpointed state that is not in ``self.model.state_dict()`` (tensors, numbers, lists)."""
        return {}

    def load_method_state(self, state: dict[str, Any]) -> None:
        """Restore what ``method_state`` returned (its tensors arrive on the CPU)."""

    # --- the engine runs the rest ------------------------------------------------------

    def fit_predict(self, data: ImageDataset, ctx: RunContext) -> Prediction:
        from clusterbench.engine import train

        if not any(p.requires_grad for p in ctx.backbone.parameters()):
            raise ConfigError("backbone", f"{getattr(ctx.backbone, 'name', type(ctx.backbone).__name__)} has nothing to train; "
                              "choose a learned one (convnet, strided, resnet18, resnet34, resnet50, mlp)")
        trained = train(self, data, ctx)
        if getattr(ctx.cluster, "trains", False):  # a stage that trains on (SCAN) goes on from this model
            return ctx.cluster.train(self, data, ctx, trained)
        return trained


def momentum_update(target: nn.Module, source: nn.Module, momentum: float) -> None:
    """θ_target ← m·θ_target + (1 − m)·θ_source (MoCo's key encoder, MiCE's teacher).

    Parameters only, as in MoCo's code: the target's BatchNorm statistics are its own, kept by
    its own forward passes in training mode.
    """
    with torch.no_grad():
        torch._foreach_mul_(list(target.parameters()), momentum)
        torch._foreach_add_(list(target.parameters()), [p.detach() for p in source.parameters()], alpha=1.0 - momentum)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Evaluation mode inside (BatchNorm's running statistics, no dropout), the previous mode after."""
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)
