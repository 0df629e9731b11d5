"""The Stacked Capsule Autoencoder's geometry and likelihoods, as plain functions of tensors
(Kosiorek et al., NeurIPS 2019; the numbers are the official code's, google-research
``stacked_capsule_autoencoders``). ``clusterbench.methods.scae`` wires them into the model;
tests check each against a hand case or a direct loop.

Poses are affine maps from a template's (or an object's) own frame to its parent's, in
normalised coordinates [−1, 1]² with x first (``F.affine_grid``'s convention): a pose is the top
two rows of a 3×3 matrix, 6 numbers, and composing poses is a matrix product.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

LOG_DUMMY = -2.0 * math.log(10.0)  # the part likelihood's dummy vote: log density and mixing logit (the code's)


def geometric_transform(raw: torch.Tensor) -> torch.Tensor:
    """6 unconstrained numbers (…×6: scale x, scale y, angle, shear, shift x, shift y) → the
    3×3 affine matrix (…×3×3), as the official code's non-linear, non-similarity transform:

        s_x, s_y = sigmoid(·) + 0.01,   θ = 2π·(·),   shear, t_x, t_y = tanh(5·(·))
        A = [[s_x, shear·s_y], [0, s_y]] · R(θ),   last column (t_x, t_y),   last row (0, 0, 1)

    Scales are bounded in (0.01, 1.01) and shifts in (−1, 1): a part or object never leaves
    the canvas nor grows past it."""
    sx, sy, angle, shear, tx, ty = raw.float().unbind(-1)
    sx, sy = torch.sigmoid(sx) + 0.01, torch.sigmoid(sy) + 0.01
    shear, tx, ty = torch.tanh(5.0 * shear), torch.tanh(5.0 * tx), torch.tanh(5.0 * ty)
    c, s = torch.cos(2.0 * math.pi * angle), torch.sin(2.0 * math.pi * angle)
    zero, one = torch.zeros_like(sx), torch.ones_like(sx)
    rows = [sx * c + shear * sy * s, -sx * s + shear * sy * c, tx,
            sy * s, sy * c, ty,
            zero, zero, one]
    return torch.stack(rows, dim=-1).unflatten(-1, (3, 3))


def render(images: torch.Tensor, poses: torch.Tensor, size: int) -> torch.Tensor:
    """Each of N small images (N×C×T×T, a template and its alpha) drawn onto a size×size canvas
    by its pose (N×2×3 or N×3×3: template frame → canvas, normalised coordinates): canvas pixel p
    shows the template at A⁻¹(p − t), bilinearly, 0 outside the template (the code's resampler).
    Corners are the pixel centres (align_corners=True: Sonnet's (size − 1)/2·(u + 1))."""
    a = poses[:, :2, :2].float()
    t = poses[:, :2, 2:].float()
    det = a[:, 0, 0] * a[:, 1, 1] - a[:, 0, 1] * a[:, 1, 0]
    inv = torch.stack([a[:, 1, 1], -a[:, 0, 1], -a[:, 1, 0], a[:, 0, 0]], dim=-1).view(-1, 2, 2) / det.view(-1, 1, 1)
    theta = torch.cat([inv, -inv @ t], dim=2)  # canvas → template frame, what affine_grid wants
    grid = F.affine_grid(theta, [len(images), images.shape[1], size, size], align_corners=True)
    return F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def normal_log_density(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor | float) -> torch.Tensor:
    """log N(x; mean, std²), elementwise."""
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device)
    return -0.5 * ((x - mean) / std) ** 2 - torch.log(std) - 0.5 * math.log(2.0 * math.pi)


def pixel_mixture_log_likelihood(
    image: torch.Tensor,
    means: torch.Tensor,
    mixing_logits: torch.Tensor,
    std: float,
    background: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
) -> torch.Tensor:
    """log p(image) per example (B), summed over pixels: at each pixel a mixture of J Normals
    of std ``std`` over the channels jointly,

        log p(y) = Σ_pixels log Σ_j softmax_j(mixing_logits) · Π_c N(y_c; means_jc, std²)

    image B×C×H×W; means B×J×C×H×W (the rendered templates); mixing_logits B×J×H×W (each
    template's rendered alpha + log presence). ``background`` = (its value per channel C, its
    mixing logit, a scalar): one more component, constant over the image, added without
    materialising it as a (J+1)-th image (the mixture is the step's largest tensor)."""
    x = image.float()
    scale = -0.5 / std**2
    # the Normal's normaliser is the same for every component: out of the log-sum-exp, added once
    constant = x.shape[1] * (-math.log(std) - 0.5 * math.log(2.0 * math.pi))
    logits = mixing_logits.float()
    joint = torch.logsumexp(logits + scale * (x.unsqueeze(1) - means.float()).pow(2).sum(2), dim=1)  # B×H×W
    normaliser = torch.logsumexp(logits, dim=1)
    if background is not None:
        value, logit = background
        logit = logit.float()
        joint = torch.logaddexp(joint, logit + scale * (x - value.float().view(1, -1, 1, 1)).pow(2).sum(1))
        normaliser = torch.logaddexp(normaliser, logit.expand_as(normaliser))
    return (joint - normaliser).flatten(1).sum(1) + constant * x.shape[-1] * x.shape[-2]


def part_mixture_log_likelihood(
    part_poses: torch.Tensor,
    part_presence: torch.Tensor,
    votes: torch.Tensor,
    vote_scales: torch.Tensor,
    vote_log_presence: torch.Tensor,
    normalized: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The object capsules' explanation of the parts: (log-likelihood per example B, posterior
    B×M×K of which object each part belongs to).

    Part m's pose x_m (6 numbers) is a mixture over the K objects' votes for it, and a dummy:

        ll_m = log [ Σ_k a_km · N(x_m; vote_km, σ_km² I₆) + a_0 · p_0 ],   a_0 = p_0 = 10⁻²

    and the example's log-likelihood is Σ_m d_m · ll_m with d_m the part's presence (the caller
    stops its gradient, and the targets' x_m). The official code uses the presences a_km as the
    mixture weights as they are (``normalized=False``, the default); the paper's equation
    divides them by their sum (``normalized=True``: a_km / (Σ_k a_km + a_0)). The posterior,
    the softmax over the K + 1 components with the dummy dropped, is the same in both.

    part_poses B×M×6, part_presence B×M, votes B×K×M×6, vote_scales B×K×M,
    vote_log_presence B×K×M (log a_km)."""
    x = part_poses.float().unsqueeze(1)  # B×1×M×6
    log_density = normal_log_density(x, votes.float(), vote_scales.float().unsqueeze(-1)).sum(-1)  # B×K×M
    dummy = torch.full_like(log_density[:, :1], LOG_DUMMY)  # B×1×M
    log_mix = torch.cat([vote_log_presence.float(), dummy], dim=1)  # B×(K+1)×M
    if normalized:
        log_mix = log_mix - torch.logsumexp(log_mix, dim=1, keepdim=True)
    joint = log_mix + torch.cat([log_density, dummy], dim=1)
    per_part = torch.logsumexp(joint, dim=1)  # B×M
    posterior = torch.softmax(joint, dim=1)[:, :-1].transpose(1, 2)  # B×M×K
    return (part_presence.float() * per_part).sum(1), posterior


def prior_sparsity(presence: torch.Tensor, within_constant: float, between_target: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The object presences' prior sparsity penalties (the code's 'l2' form), presence B×K:

        within  = mean_b (Σ_k a_bk − within_constant)²    (about this many objects per image)
        between = mean_k (Σ_b a_bk − between_target)²     (each object in about this many images)

    The code's constants: K / classes (3.2 for 32 objects and 10 digits) and B / classes."""
    p = presence.float()
    within = ((p.sum(1) - within_constant) ** 2).mean()
    between = ((p.sum(0) - between_target) ** 2).mean()
    return within, between


def _entropy(p: torch.Tensor, dim: int) -> torch.Tensor:
    p = p / p.sum(dim, keepdim=True).clamp_min(1e-16)
    return -(p * torch.log(p.clamp_min(1e-16))).sum(dim)


def posterior_sparsity(posterior: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The part → object posterior's sparsity terms (the code's 'entropy' form), posterior B×M×K.
    With q_b = Σ_m posterior_bm / M (B×K):

        within  = mean_b H(q_b / Σ_k q_bk)       (minimised: an image uses few objects)
        between = H(Σ_b q_b / Σ_bk q_bk)          (maximised: the batch uses them all)"""
    q = posterior.float().mean(1)
    return _entropy(q, 1).mean(), _entropy(q.sum(0), 0)
