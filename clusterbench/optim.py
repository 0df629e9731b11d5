"""Optimisers (SGD, Adam, LARS) and the learning-rate schedule of the training loop."""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Optional

import torch
from torch import nn

from clusterbench.errors import ConfigError


class LARS(torch.optim.Optimizer):
    """Layer-wise Adaptive Rate Scaling (You et al., 2017), as SwAV and SimCLR train with it.

    Each weight's step is scaled by the trust ratio η·‖w‖ / (‖g‖ + λ‖w‖), with λ the weight
    decay, then momentum SGD. Biases and normalisation weights (1-D tensors) are neither decayed
    nor adapted, as in those papers. ``clip`` (apex's LARC "clip" mode, solo-learn's
    ``clip_lr``) caps the ratio at 1 relative to the learning rate: the step is lr·min(trust/lr, 1).
    SwAV: η = 0.001, no clip; solo-learn's CIFAR recipes: η = 0.02 with clip.
    """

    def __init__(self, params: Iterable[nn.Parameter], lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 0.001,
                 clip: bool = False) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, clip=clip))

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 — torch's signature
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if p.ndim > 1:  # weights: decay, then the trust ratio
                    # apex's LARC, as SwAV: the ratio's denominator is ‖g‖ + λ‖w‖ (not ‖g + λw‖)
                    w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
                    denominator = g_norm + group["weight_decay"] * w_norm
                    trust = torch.where((w_norm > 0) & (g_norm > 0), group["eta"] * w_norm / denominator, torch.ones_like(w_norm))
                    g = g.add(p, alpha=group["weight_decay"])
                    if group.get("clip", False):
                        trust = torch.clamp(trust / group["lr"], max=1.0)
                    g = g.mul(trust)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.clone(g).detach()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(g)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return None


def build_optimizer(name: str, params: list[nn.Parameter], lr: float, momentum: float, weight_decay: float,
                    lars_eta: float = 0.001, lars_clip: bool = False, rmsprop_alpha: float = 0.9,
                    rmsprop_eps: float = 1e-3) -> torch.optim.Optimizer:
    """``trainer.optimizer``: sgd | adam | lars (with ``trainer.lars_eta`` and ``trainer.lars_clip``)
    | rmsprop (with ``trainer.momentum``, ``trainer.rmsprop_alpha`` and ``trainer.rmsprop_eps``).

    RMSProp is torch's, which differs from TensorFlow 1's (SCAE's) in two details: torch adds ε
    outside the root (TF inside: √(ms + ε_TF) ≈ √ms + √ε_TF where the gradients vanish, hence
    the default 1e-3 ≈ √6e-7) and starts the mean square at 0 (TF at 1, which damps TF's first
    few hundred steps)."""
    name = check_optimizer_values(name, lr, weight_decay, lars_eta, rmsprop_alpha, rmsprop_eps)
    if not params:
        raise ConfigError("method", "the method has no trainable parameters")
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=rmsprop_alpha, eps=rmsprop_eps, momentum=momentum, weight_decay=weight_decay)
    return LARS(params, lr=lr, momentum=momentum, weight_decay=weight_decay, eta=lars_eta, clip=lars_clip)


OPTIMIZERS = ("sgd", "adam", "lars", "rmsprop")


def check_optimizer_values(name: Any, lr: float, weight_decay: float, lars_eta: float = 0.001,
                           rmsprop_alpha: float = 0.9, rmsprop_eps: float = 1e-3) -> str:
    """The optimiser's name, after one-line errors for impossible settings (also called before
    any data is read, so a wrong value costs no loading)."""
    name = str(getattr(name, "value", name))
    if name not in OPTIMIZERS:
        raise ConfigError("trainer.optimizer", f"'{name}' is not an optimizer; use sgd, adam, lars or rmsprop")
    if lr <= 0:
        raise ConfigError("trainer.lr", f"{lr} is not a learning rate; use a positive value")
    if weight_decay < 0:
        raise ConfigError("trainer.weight_decay", f"{weight_decay} is negative; use 0 or more")
    if name == "lars" and lars_eta <= 0:
        raise ConfigError("trainer.lars_eta", f"{lars_eta} is not a trust coefficient; use a positive value (SwAV: 0.001, solo-learn: 0.02)")
    if name == "rmsprop" and not 0.0 <= rmsprop_alpha < 1.0:
        raise ConfigError("trainer.rmsprop_alpha", f"{rmsprop_alpha} is not a decay in [0, 1); use 0.9 (TensorFlow's) or 0.99 (torch's)")
    if name == "rmsprop" and not rmsprop_eps > 0:
        raise ConfigError("trainer.rmsprop_eps", f"{rmsprop_eps} must be positive (the default 1e-3 matches TensorFlow's ε 1e-6 inside the root)")
    return name


def learning_rate(progress: float, base_lr: float, warmup: float, schedule: str, min_lr: float = 0.0) -> float:
    """The learning rate at ``progress`` ∈ [0, 1] of training.

    Linear warm-up from 0 over the first ``warmup`` fraction, then constant or a half-cosine
    from ``base_lr`` down to ``min_lr`` (SGDR without restarts, as MoCo v2 / SwAV use).
    """
    progress = min(max(progress, 0.0), 1.0)
    if warmup > 0 and progress < warmup:
        return base_lr * progress / warmup
    if str(getattr(schedule, "value", schedule)) == "constant":
        return base_lr
    t = (progress - warmup) / max(1.0 - warmup, 1e-12)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * t))


def set_learning_rate(optimizers: Iterable[torch.optim.Optimizer], lr: float) -> None:
    """The schedule's ``lr`` into every param group, times the group's ``lr_scale`` where it has
    one (InfoGAN's generator runs at 5 × the discriminator's rate)."""
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"] if "lr_scale" in group else lr


def backward_and_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, scaler: torch.amp.GradScaler, params: list[nn.Parameter],
                      grad_clip: Any = None, average: Optional[Callable[[list[nn.Parameter]], None]] = None,
                      before_step: Optional[Callable[[], None]] = None) -> None:
    """One optimiser step on ``loss``: zero the optimiser's gradients, back-propagate the
    (fp16-scaled) loss, ``average`` the gradients over the ranks where the caller must (no DDP
    hooks did it), unscale, clip ``params`` to ``grad_clip``, ``before_step`` (a method's hook),
    step through the scaler. ``scaler.update()`` is the caller's, once per training step."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if average is not None:
        average(params)
    scaler.unscale_(optimizer)
    if grad_clip is not None:
        nn.utils.clip_grad_norm_(params, grad_clip)
    if before_step is not None:
        before_step()
    scaler.step(optimizer)


class ManualSteps:
    """``DeepMethod.optimize(name, loss)`` for a method that owns its optimisers (a GAN's D
    then G step inside one training step): the backward and optimiser step the engine runs for
    the one-optimiser methods, for one named optimiser at a time.

    Each call zeroes that optimiser's gradients, back-propagates the (fp16-scaled) loss,
    averages the optimiser's gradients over the ranks (one flat all-reduce: DDP's hooks expect
    one backward per forward, and such a step has several), unscales, clips to ``grad_clip``
    and steps through the ``GradScaler``. The engine calls ``scaler.update()`` once after the
    whole training step, as torch's AMP recipe for several optimisers does."""

    def __init__(self, optimizers: dict[str, torch.optim.Optimizer], scaler: torch.amp.GradScaler, grad_clip: Any,
                 average_gradients: Any) -> None:
        self.optimizers, self.scaler, self.grad_clip = optimizers, scaler, grad_clip
        self.average_gradients = average_gradients  # clusterbench.distributed.average_gradients (a no-op on one process)

    def __call__(self, name: str, loss: torch.Tensor) -> None:
        if name not in self.optimizers:
            raise KeyError(f"no optimiser named {name!r}; the method built {', '.join(self.optimizers)}")
        optimizer = self.optimizers[name]
        params = [p for group in optimizer.param_groups for p in group["params"]]
        backward_and_step(optimizer, loss, self.scaler, params, self.grad_clip, self.average_gradients)

    def state_dict(self) -> dict[str, Any]:
        return {name: optimizer.state_dict() for name, optimizer in self.optimizers.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state) != set(self.optimizers):
            raise KeyError(f"the checkpoint holds optimisers {sorted(state)}, the method builds {sorted(self.optimizers)}")
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state[name])
