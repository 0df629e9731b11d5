"""The linear probe: multinomial logistic regression on frozen, L2-normalised features, fitted
on the device by full-batch L-BFGS (strong-Wolfe line search).

Objective: mean cross-entropy + (λ/2)·‖W‖² (the bias is not penalised), i.e. scikit-learn's
``LogisticRegression(C=1/(λ·N))`` with its lbfgs solver. It is convex, so a full-batch
quasi-Newton method reaches the optimum in tens of iterations, each one matrix product over the
features, with no learning rate or epoch count to tune and the same answer every time: unlike a
few epochs of SGD, the probe's number depends on the features alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class LinearProbe:
    weight: torch.Tensor  # C×D, on L2-normalised features
    bias: torch.Tensor  # C
    l2: float  # λ of (λ/2)·‖W‖²
    iterations: int  # L-BFGS function evaluations used
    loss: float  # the final objective

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        x = F.normalize(features.float().to(self.weight.device), dim=1)
        return x @ self.weight.T + self.bias

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        return self.logits(features).argmax(1)


def fit_linear_probe(features: torch.Tensor, labels: torch.Tensor, num_classes: int, l2: float = 1e-4, max_iter: int = 500,
                     tolerance: float = 1e-7) -> LinearProbe:
    """Fit the probe on ``features`` (N×D) with ``labels`` (N) to convergence or ``max_iter``
    evaluations; deterministic (zero start, full batch)."""
    if l2 < 0:
        raise ValueError(f"l2 {l2} must not be negative")
    x = F.normalize(features.float(), dim=1)
    y = labels.to(x.device, torch.int64)
    weight = torch.zeros(num_classes, x.shape[1], device=x.device, requires_grad=True)
    bias = torch.zeros(num_classes, device=x.device, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, tolerance_grad=tolerance, tolerance_change=tolerance * 1e-2,
                            history_size=20, line_search_fn="strong_wolfe")
    calls = {"n": 0}

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x @ weight.T + bias, y) + 0.5 * l2 * weight.pow(2).sum()
        loss.backward()
        calls["n"] += 1
        return loss

    with torch.enable_grad():
        opt.step(closure)
        final = float(closure().detach())
    return LinearProbe(weight.detach(), bias.detach(), float(l2), calls["n"], final)
