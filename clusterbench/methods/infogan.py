"""InfoGAN (Chen et al., NeurIPS 2016): a GAN whose generator input carries a code c that a
recognition network Q must recover from the image; with a K-way categorical code, Q's
categorical head clusters real images.

    min_{G,Q} max_D  V(D, G) − λ·L_I(G, Q)
    V(D, G) = E_x[log D(x)] + E_{z,c}[log(1 − D(G(z, c)))]
    L_I(G, Q) = E_{c, x~G(z,c)}[log Q(c | x)]     (the variational lower bound of I(c; G(z, c)),
                                                  up to the codes' constant entropy H(c))

Latent input (74 on MNIST): z ~ U(−1, 1)^62 noise, c_cat ~ Cat(K) one-hot (K = the number of
clusters), c_cont ~ U(−1, 1)^2. Q models c_cat by a softmax and each continuous code by a
Gaussian of fixed σ = 1 (the official code's ``fix_std=True``), so L_I is the categorical
cross-entropy plus ½(c − μ)² + ½·log 2π per continuous code.

Each training step alternates, as the official trainer does (``infogan_trainer.py``):

1. D step: fresh latents → G(z, c) (detached) → D on the real batch and on the fakes
   separately; loss −log D(x) − log(1 − D(G)) and, in the official code's form, + λ·L_I on the
   fakes. Q's head shares D's body and lives with D's variables there (``d_net``), so D's
   optimiser (Adam 2e-4, β1 0.5) updates body, D head and Q head.
2. G step: fresh latents → G → D and Q; the non-saturating −log D(G(z, c)) + λ·L_I; G's
   optimiser (Adam 1e-3, β1 0.5) updates G.

``method.q_optimizer=generator`` is the form the paper's min_{G,Q} reads as (and the issue's
"1e-3 for G and Q"): Q's head moves with G's optimiser and D's loss has no L_I term; the
official form is the default because the published numbers come from that code.

Clusters: the argmax of Q's categorical head on the real, un-augmented images (``embed``
returns [softmax of Q's categorical head | D's 1024 body features]); k-means on D's body
features is scored beside it as ``kmeans_acc``...

The method owns its two optimisers (``DeepMethod.owns_optimizers``): the engine still sets their
learning rates from the schedule (G's at ``generator_lr_scale`` × D's), scales fp16 losses,
clips, syncs gradients across ranks, checkpoints both, and guards against a non-finite loss.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clusterbench.backbones.infogan import InfoGANBody, infogan_stages, init_gan_weights, stage_size
from clusterbench.cluster import kmeans
from clusterbench.cluster.state import posterior_state
from clusterbench.errors import ConfigError
from clusterbench.methods.base import require_positive
from clusterbench.methods.deep import Batch, DeepMethod, InputShape
from clusterbench.methods.streams import RankStream

Q_OPTIMIZERS = ("discriminator", "generator")
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


# --- the objective's parts, as plain functions (tests check them by hand) ------------------


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """−E[log D(x)] − E[log(1 − D(G(z)))] with D = sigmoid(logit)."""
    return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The non-saturating −E[log D(G(z))] (the paper and the official code)."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def info_loss(q_logits: torch.Tensor, q_means: torch.Tensor, codes: torch.Tensor, continuous: torch.Tensor,
              continuous_weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """L_I as a loss to minimise: −E[log Q(c_cat | x)] − w·E[Σ_j log N(c_j; μ_j, 1)].

    ``q_logits`` B×K, ``codes`` B (the drawn categories), ``q_means`` and ``continuous`` B×J.
    Returns (total, categorical cross-entropy, continuous negative log-likelihood)."""
    categorical = F.cross_entropy(q_logits.float(), codes)
    if continuous.shape[1]:
        gaussian = (0.5 * (continuous.float() - q_means.float()) ** 2 + HALF_LOG_2PI).sum(1).mean()
    else:
        gaussian = torch.zeros((), device=q_logits.device)
    return categorical + continuous_weight * gaussian, categorical, gaussian


@contextlib.contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """No parameter gradients for ``modules`` inside (their inputs still get theirs)."""
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


# --- the networks ----------------------------------------------------------------------------


class Generator(nn.Module):
    """InfoGAN's MNIST generator, adapted to the body's stages: FC 1024, BatchNorm, ReLU → FC to
    ``top``×s×s, BatchNorm, ReLU → (stages − 1) × [4×4 up-conv stride 2 halving the width,
    BatchNorm, ReLU] → 4×4 up-conv stride 2 to C channels → sigmoid (the official code's
    Bernoulli mean) → standardised as the real images are. On 28 px: 74 → 1024 → 7·7·128 →
    64×14×14 → 1×28×28. Sizes the stages do not divide are generated larger and centre-cropped."""

    def __init__(self, latent_dim: int, shape: InputShape, stages: int, width: int = 64, max_width: int = 512,
                 hidden: int = 1024, batch_norm: bool = True) -> None:
        super().__init__()
        self.size = shape.size
        self.start = math.ceil(shape.size / 2**stages)
        widths = [min(width * 2**i, max_width) for i in range(stages)][::-1]  # the body's, mirrored: top first
        norm1d = (lambda n: [nn.BatchNorm1d(n)]) if batch_norm else (lambda n: [])
        norm2d = (lambda n: [nn.BatchNorm2d(n)]) if batch_norm else (lambda n: [])
        layers: list[nn.Module] = [
            nn.Linear(latent_dim, hidden), *norm1d(hidden), nn.ReLU(),
            nn.Linear(hidden, widths[0] * self.start**2), *norm1d(widths[0] * self.start**2), nn.ReLU(),
            nn.Unflatten(1, (widths[0], self.start, self.start)),
        ]
        for a, b in zip(widths, widths[1:]):
            layers += [nn.ConvTranspose2d(a, b, 4, stride=2, padding=1), *norm2d(b), nn.ReLU()]
        layers.append(nn.ConvTranspose2d(widths[-1], shape.channels, 4, stride=2, padding=1))
        self.net = nn.Sequential(*layers)
        mean = torch.tensor(shape.mean if shape.mean is not None else [0.0] * shape.channels).view(1, -1, 1, 1)
        std = torch.tensor(shape.std if shape.std is not None else [1.0] * shape.channels).view(1, -1, 1, 1)
        # not saved: the run's channel statistics, recomputed by every run from its data
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)
        init_gan_weights(self)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        pixels = torch.sigmoid(self.net(latent))  # B×C×(start·2^stages)², in [0, 1]
        if pixels.shape[-1] != self.size:
            off = (pixels.shape[-1] - self.size) // 2
            pixels = pixels[..., off : off + self.size, off : off + self.size]
        return (pixels - self.mean) / self.std


class InfoGANNet(nn.Module):
    """D and Q on one body (the backbone), and G."""

    def __init__(self, backbone: nn.Module, generator: Generator, num_codes: int, continuous: int, leaky_slope: float, batch_norm: bool) -> None:
        super().__init__()
        self.backbone = backbone
        self.d_head = nn.Linear(backbone.out_dim, 1)
        self.q_head = nn.Sequential(
            nn.Linear(backbone.out_dim, 128), *([nn.BatchNorm1d(128)] if batch_norm else []), nn.LeakyReLU(leaky_slope),
            nn.Linear(128, num_codes + continuous),
        )
        self.generator = generator
        self.num_codes = num_codes
        init_gan_weights(self.d_head)
        init_gan_weights(self.q_head)

    def discriminate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """D's real/fake logit (B), Q's categorical logits (B×K) and continuous means (B×J)."""
        h = self.backbone(x)
        q = self.q_head(h)
        return self.d_head(h).squeeze(1), q[:, : self.num_codes], q[:, self.num_codes :]


class InfoGAN(DeepMethod):
    """InfoGAN with a K-way categorical code; clusters = Q's categorical argmax."""

    augmented = False  # the paper trains on the plain images
    own_assignment = True  # cluster=own: Q's categorical argmax
    owns_optimizers = True  # D's and G's Adam, stepped in turn inside each training step
    views_needed = 1

    def __init__(
        self,
        num_clusters: Optional[int] = None,
        kmeans_restarts: int = 3,
        noise_dim: int = 62,
        continuous_codes: int = 2,
        info_weight: float = 1.0,
        continuous_weight: float = 1.0,
        generator_lr_scale: float = 5.0,
        beta1: float = 0.5,
        beta2: float = 0.999,
        q_optimizer: str = "discriminator",
        leaky_slope: float = 0.01,
        batch_norm: bool = True,
    ) -> None:
        super().__init__(num_clusters, kmeans_restarts)
        require_positive("method.noise_dim", noise_dim)
        if isinstance(continuous_codes, bool) or not isinstance(continuous_codes, int) or continuous_codes < 0:
            raise ConfigError("method.continuous_codes", f"{continuous_codes!r} is not a count; use 0 or more (the paper: 2)")
        for key, value in (("info_weight", info_weight), ("continuous_weight", continuous_weight)):
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"method.{key}", f"{value} must be a finite weight ≥ 0 (the paper: 1)")
        if not math.isfinite(generator_lr_scale) or generator_lr_scale <= 0:
            raise ConfigError("method.generator_lr_scale", f"{generator_lr_scale} must be positive (the paper: 5, G's 1e-3 against D's 2e-4)")
        for key, value in (("beta1", beta1), ("beta2", beta2)):
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"method.{key}", f"{value} is not an Adam β in [0, 1)")
        q_optimizer = str(getattr(q_optimizer, "value", q_optimizer))
        if q_optimizer not in Q_OPTIMIZERS:
            raise ConfigError("method.q_optimizer", f"'{q_optimizer}' is not one of {', '.join(Q_OPTIMIZERS)}")
        if not 0.0 <= leaky_slope < 1.0:
            raise ConfigError("method.leaky_slope", f"{leaky_slope} is not a slope in [0, 1)")
        self.noise_dim, self.continuous = int(noise_dim), int(continuous_codes)
        self.info_weight, self.continuous_weight = float(info_weight), float(continuous_weight)
        self.generator_lr_scale, self.betas = float(generator_lr_scale), (float(beta1), float(beta2))
        self.q_optimizer, self.leaky_slope, self.batch_norm = q_optimizer, float(leaky_slope), bool(batch_norm)
        self.num_codes = 0  # K, fixed by configure_clusters before setup
        self.latents = RankStream(salt=11)  # the latent codes' stream (on the device, checkpointed)

    @property
    def latent_dim(self) -> int:
        return self.noise_dim + self.num_codes + self.continuous

    def configure_clusters(self, k: int) -> None:
        self.num_codes = k

    def setup(self, backbone: nn.Module, shape: InputShape) -> nn.Module:
        # G mirrors the paper's body (backbone=infogan); with another backbone as D's body, G is
        # still the paper's generator for this image size
        body = backbone if isinstance(backbone, InfoGANBody) else None
        stages = body.stages if body is not None else infogan_stages(shape.size)
        width, max_width, hidden = (body.widths[0], max(body.widths), body.out_dim) if body is not None else (64, 512, 1024)
        if stage_size(shape.size, stages) < 1:
            raise ConfigError("dataset.image_size", f"{shape.size}-px images are too small for InfoGAN's {stages} stages")
        generator = Generator(self.latent_dim, shape, stages, width=width, max_width=max_width, hidden=hidden, batch_norm=self.batch_norm)
        return InfoGANNet(backbone, generator, self.num_codes, self.continuous, self.leaky_slope, self.batch_norm)

    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        """D's Adam over the body and D's head (and Q's head in the official form); G's Adam over
        G (and Q's head in the paper's form) at ``generator_lr_scale`` × lr. ``lr_scale`` in a
        param group is the engine's multiplier of the scheduled learning rate."""
        net: InfoGANNet = self.model  # type: ignore[assignment]
        d_params = [*net.backbone.parameters(), *net.d_head.parameters()]
        g_params = list(net.generator.parameters())
        (d_params if self.q_optimizer == "discriminator" else g_params).extend(net.q_head.parameters())
        return {
            "discriminator": torch.optim.Adam(d_params, lr=lr, betas=self.betas),
            "generator": torch.optim.Adam([{"params": g_params, "lr_scale": self.generator_lr_scale}], lr=lr * self.generator_lr_scale, betas=self.betas),
        }

    # --- the alternating step ----------------------------------------------------------------

    def sample_latent(self, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(latent B×(noise + K + J), categories B, continuous codes B×J) for this rank's rows.

        Drawn for the global batch from a stream that is the same on every rank (each keeps its
        rows), so the run does not depend on the number of ranks; on the device, no host copy."""
        self.latents.bind(self.seed, self.dist)
        noise = self.latents.uniform(batch, self.noise_dim, device=device, low=-1.0, high=1.0)
        codes = self.latents.integers(self.num_codes, batch, device=device)
        continuous = self.latents.uniform(batch, self.continuous, device=device, low=-1.0, high=1.0)
        latent = torch.cat([noise, F.one_hot(codes, self.num_codes).to(noise.dtype), continuous], dim=1)
        return latent, codes, continuous

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        net: InfoGANNet = self.model  # type: ignore[assignment]
        x = batch.views[0]
        official = self.q_optimizer == "discriminator"

        # 1. D (with Q's head in the official form): real against detached fakes
        latent, codes, continuous = self.sample_latent(len(x), x.device)
        with torch.no_grad():
            fake = net.generator(latent)
        real_logits, _, _ = net.discriminate(x)
        fake_logits, q_logits, q_means = net.discriminate(fake.to(x.dtype))
        d_loss = discriminator_loss(real_logits.float(), fake_logits.float())
        d_info, _, _ = info_loss(q_logits, q_means, codes, continuous, self.continuous_weight)
        self.optimize("discriminator", d_loss + self.info_weight * d_info if official else d_loss)

        # 2. G (with Q's head in the paper's form): fresh latents through the updated D, whose
        # weights G's loss does not train (no gradient computed for them: Lightning's toggle)
        latent, codes, continuous = self.sample_latent(len(x), x.device)
        fake = net.generator(latent)
        with frozen(net.backbone, net.d_head, *([net.q_head] if official else [])):
            fake_logits, q_logits, q_means = net.discriminate(fake)
        g_loss = generator_loss(fake_logits.float())
        info, categorical, gaussian = info_loss(q_logits, q_means, codes, continuous, self.continuous_weight)
        self.optimize("generator", g_loss + self.info_weight * info)

        with torch.no_grad():
            return {
                "loss": (d_loss + g_loss + self.info_weight * info).detach(),
                "d_loss": d_loss.detach(),
                "g_loss": g_loss.detach(),
                "info_loss": info.detach(),
                # the categorical code's mutual information bound H(c) − CE (≤ log K)
                "mi_categorical": (math.log(self.num_codes) - categorical).detach(),
                "d_real": torch.sigmoid(real_logits.float()).mean(),
                "d_fake": torch.sigmoid(fake_logits.float()).mean(),
                "q_code_acc": (q_logits.argmax(1) == codes).float().mean(),
            }

    # --- read-out --------------------------------------------------------------------------

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """[softmax of Q's categorical head (K) | D's body features]: what ``predict`` needs."""
        net: InfoGANNet = self.model  # type: ignore[assignment]
        h = net.backbone(x)
        q = net.q_head(h)[:, : self.num_codes]
        return torch.cat([torch.softmax(q.float(), dim=1), h.float()], dim=1)

    def predict(self, features: torch.Tensor, k: int, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
        """Q's categorical argmax; k-means on D's (L2-normalised) body features beside it."""
        clusters = posterior_state(self.num_codes)
        q = features[:, : self.num_codes]
        ids, confidence = q.argmax(1).cpu().numpy(), q.max(1).values.cpu().numpy()
        body = F.normalize(features[:, self.num_codes :].float(), dim=1)
        alternative = kmeans(body, k, restarts=self.kmeans_restarts, seed=seed).assignments.cpu().numpy()
        return ids, {"alternatives": {"kmeans": alternative}, "clusters_used": int(len(np.unique(ids))), "clusters": clusters, "confidence": confidence}

    def samples(self, per_code: int = 10) -> tuple[np.ndarray, str, str]:
        """G's images, a row per categorical code and a column per noise draw (the same noise
        down each column, continuous codes 0): does the code capture the classes? As pixels."""
        net: InfoGANNet = self.model  # type: ignore[assignment]
        device = next(net.parameters()).device
        gen = torch.Generator(device=device).manual_seed(self.seed * 1_000_003 + 13)  # not the training stream
        noise = (torch.rand(per_code, self.noise_dim, device=device, generator=gen) * 2 - 1).repeat(self.num_codes, 1)
        codes = torch.arange(self.num_codes, device=device).repeat_interleave(per_code)
        latent = torch.cat([noise, F.one_hot(codes, self.num_codes).float(), torch.zeros(len(codes), self.continuous, device=device)], dim=1)
        g = net.generator
        pixels = (g(latent).float() * g.std + g.mean).clamp(0, 1)  # back from the run's standardisation
        grid = (pixels * 255).round().to(torch.uint8).cpu().numpy()
        grid = grid.reshape(self.num_codes, per_code, *grid.shape[1:])
        return grid, "code {}", "InfoGAN samples: a row per categorical code, a column per noise draw (continuous codes 0)"

    def method_state(self) -> dict[str, Any]:
        state = self.latents.state()
        return {"latent_gen": state} if state is not None else {}

    def load_method_state(self, state: dict[str, Any]) -> None:
        self.latents.load(state.get("latent_gen"))
