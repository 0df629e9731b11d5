"""The Stacked Capsule Autoencoder (Kosiorek, Sabour, Teh and Hinton, NeurIPS 2019), with the
official code's MNIST configuration (google-research ``stacked_capsule_autoencoders``,
``run_mnist.sh``) by default. Written from the paper's equations and the code's numbers.

**Part capsule autoencoder (PCAE).** A CNN (``backbone=capsule``) maps the image, placed on a
zero canvas, to a feature map; M capsules each pool it with their own softmax attention over
positions into 6 pose numbers, a presence logit and S special features. Each part m owns a
learned T×T template (and a T×T alpha of mixing logits); its pose (``capsules.geometric_transform``)
draws them onto the canvas (``capsules.render``), its special features set its intensity (an
MLP, shared by the parts, then a sigmoid). The image likelihood is a pixel-wise mixture of the
drawn templates and a constant background (``capsules.pixel_mixture_log_likelihood``), the
mixing logits being each drawn alpha + log presence. Presences are sigmoids of logits with
U(−2, 2) noise in training.

**Object capsule autoencoder (OCAE).** A Set Transformer over the parts ([pose, 1 − presence,
template · intensity] with stopped gradients, and the special features) gives K object vectors;
a per-object MLP turns each into an object-viewer pose OV, a presence logit, and for every part m
a deformation of a learned object-part pose OP_km, a presence logit and a scale. Object k's vote
for part m is OV_k · OP_km; a part's pose is a mixture over the K votes (and a dummy)
(``capsules.part_mixture_log_likelihood``). a_km = a_k · sigmoid(vote logit + noise).

**Loss** (the code's ``_loss``): −log p(image) − w·log p(parts) + 10·‖OP deformations‖²/2B
+ 2.0·prior within-example sparsity + 0.35·prior between-example sparsity
+ 0.7·posterior within-example entropy − 0.2·posterior between-example entropy (the weights are
``method.*_weight``; ``capsules.prior_sparsity`` / ``posterior_sparsity``).

**Clusters:** k-means (un-normalised, as the code) on the object presences max_m a_km of each
image (centred on the canvas, no noise). k-means on the posterior's per-object sums is scored
beside it (``posterior_acc``); the linear probe (``eval.linear``) fits on both, the study's
"linear classification" column.

Known departures from the code, each for a deterministic read-out or a torch equivalent: the
presence noise is off in evaluation (the code leaves it on); evaluation centres the image on the
canvas (the code shifts the test set too); torch's RMSProp (``trainer.optimizer=rmsprop``) adds ε
outside the root and starts its mean square at 0; the background's value starts at sigmoid(0)
(the code draws its logit Glorot-uniform). The code's online supervised probes are not trained
(labels never reach training here).
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clusterbench.cluster import kmeans
from clusterbench.cluster.state import kmeans_state
from clusterbench.errors import ConfigError
from clusterbench.methods.base import require_positive
from clusterbench.methods.capsules import (
    geometric_transform,
    part_mixture_log_likelihood,
    pixel_mixture_log_likelihood,
    posterior_sparsity,
    prior_sparsity,
    render,
)
from clusterbench.methods.deep import Batch, DeepMethod, InputShape
from clusterbench.methods.set_transformer import SetTransformer
from clusterbench.methods.streams import RankStream

PART_MIXTURES = ("official", "paper")
TEMPLATE_NONLINS = ("sigmoid", "relu1")
POSE = 6


def pose_vector(matrix: torch.Tensor) -> torch.Tensor:
    """The top two rows of 3×3 poses as 6 numbers (what the part likelihood compares)."""
    return matrix[..., :2, :].flatten(-2)


class CapsuleLinear(nn.Module):
    """K independent linear maps, one per capsule: B×K×in → B×K×out (the code's BatchLinear:
    weights N(0, 1/in) truncated at 2σ, biases 0)."""

    def __init__(self, capsules: int, n_in: int, n_out: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(capsules, n_in, n_out))
        nn.init.trunc_normal_(self.weight, std=1.0 / math.sqrt(n_in), a=-2.0 / math.sqrt(n_in), b=2.0 / math.sqrt(n_in))
        self.bias = nn.Parameter(torch.zeros(capsules, n_out)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.einsum("bki,kio->bko", x, self.weight.to(x.dtype))
        return y + self.bias.to(y.dtype) if self.bias is not None else y


class PartCapsules(nn.Module):
    """The PCAE: encoder (backbone + attention-pooled capsule head) and template decoder."""

    def __init__(self, backbone: nn.Module, map_shape: tuple[int, int, int], parts: int, special: int,
                 template_size: int, channels: int, canvas: int, template_nonlin: str) -> None:
        super().__init__()
        self.backbone = backbone
        self.parts, self.special, self.canvas, self.template_nonlin = parts, special, canvas, template_nonlin
        width = map_shape[0]
        self.position_bias = nn.Parameter(torch.zeros(map_shape))  # a learned bias over the map: where things are
        self.head = nn.Conv2d(width, parts * (POSE + special + 1) + parts, 1)  # values and an attention logit per capsule
        # templates: the first M rows of a random orthogonal matrix, scaled to [0, 1] (the code's init)
        n = max(parts, template_size**2)
        q, _ = torch.linalg.qr(torch.rand(n, n))
        t = q[:parts, : template_size**2]
        self.templates = nn.Parameter(((t - t.min()) / (t.max() - t.min())).view(parts, 1, template_size, template_size))
        self.alpha = nn.Parameter(torch.zeros(parts, 1, template_size, template_size))  # mixing logits, 0 outside
        self.intensity = nn.Sequential(nn.Linear(special, 32), nn.ReLU(), nn.Linear(32, channels))  # shared by the parts
        self.background = nn.Parameter(torch.zeros(channels))  # its value: sigmoid of this
        self.background_logit = nn.Parameter(torch.zeros(()))  # its mixing logit: softplus of this

    def encode(self, canvas: torch.Tensor, noise: Optional[torch.Tensor]) -> dict[str, torch.Tensor]:
        h = self.backbone(canvas)
        if h.dim() == 2:  # a vector backbone: one position to attend to
            h = h[:, :, None, None]
        h = self.head(h + self.position_bias.to(h.dtype)).flatten(2)  # B×(M·(6+S+1) + M)×positions
        values = h[:, : -self.parts].unflatten(1, (self.parts, POSE + self.special + 1))  # B×M×(6+S+1)×P
        attention = torch.softmax(h[:, -self.parts :].float(), dim=-1).unsqueeze(2)  # B×M×1×P
        pooled = (values.float() * attention).sum(-1)  # B×M×(6+S+1)
        pose_raw, features, logit = pooled.split([POSE, self.special, 1], dim=-1)
        logit = logit.squeeze(-1) + (noise if noise is not None else 0.0)
        return {"pose": geometric_transform(pose_raw), "presence_logit": logit, "presence": torch.sigmoid(logit), "features": features}

    def template_images(self) -> torch.Tensor:
        """The M templates after their non-linearity (M×1×T×T, in [0, 1])."""
        return torch.sigmoid(self.templates) if self.template_nonlin == "sigmoid" else self.templates.clamp(0.0, 1.0)

    def intensities(self, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        """Each part's intensity per channel from its special features (B×M×C, in (0, 1))."""
        return torch.sigmoid(self.intensity(parts["features"].float()))

    def decode(self, parts: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The pixel mixture: (the drawn templates' means B×M×C×S×S, their mixing logits
        B×M×S×S, the background (value per channel C, mixing logit), intensities B×M×C)."""
        b, m = parts["presence"].shape
        intensity = self.intensities(parts)
        stacked = torch.cat([self.template_images(), self.alpha], dim=1)  # M×2×T×T: template and alpha, one warp
        drawn = render(stacked.unsqueeze(0).expand(b, -1, -1, -1, -1).flatten(0, 1), parts["pose"].flatten(0, 1), self.canvas)
        # unbind, not slicing: a slice's backward would zero-fill and copy the whole B×M×2×S×S
        drawn_template, drawn_alpha = drawn.unflatten(0, (b, m)).unbind(2)  # B×M×S×S each
        means = drawn_template.unsqueeze(2) * intensity[..., None, None]  # B×M×C×S×S
        logits = drawn_alpha + F.logsigmoid(parts["presence_logit"].float())[..., None, None]
        background = (torch.sigmoid(self.background), F.softplus(self.background_logit))
        return means, logits, background, intensity


class ObjectCapsules(nn.Module):
    """The OCAE: Set Transformer encoder and the per-object capsule decoder (the code's CapsuleLayer)."""

    def __init__(self, parts: int, objects: int, part_input: int, layers: int, heads: int, dim: int,
                 out_dim: int, params: int, hidden: int) -> None:
        super().__init__()
        self.parts, self.objects = parts, objects
        self.encoder = SetTransformer(part_input, objects, layers=layers, heads=heads, dim=dim, out_dim=out_dim)
        self.mlp1 = CapsuleLinear(objects, out_dim, hidden)
        self.mlp2 = CapsuleLinear(objects, hidden, params)
        self.mlp3 = CapsuleLinear(objects, params + 1, hidden)
        # OP deformations (M×6), OV (6), object presence (1), vote presences (M), vote scales (M)
        self.sizes = [parts * POSE, POSE, 1, parts, parts]
        self.mlp4 = CapsuleLinear(objects, hidden, sum(self.sizes), bias=False)
        self.biases = nn.Parameter(torch.zeros(objects, sum(self.sizes[1:])))  # all but the deformations
        limit = math.sqrt(6.0 / (objects * (parts + POSE)))  # TensorFlow's Glorot for a 1×K×M×6 variable
        self.static_op = nn.Parameter(torch.empty(objects, parts, POSE).uniform_(-limit, limit))

    def forward(self, part_input: torch.Tensor, part_presence: torch.Tensor, noise: Optional[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
        h = self.encoder(part_input, part_presence)  # B×K×out_dim
        h = self.mlp2(F.relu(self.mlp1(h)))
        h = torch.cat([h, torch.ones_like(h[..., :1])], dim=-1)  # the code's "caps_exist" input
        h = self.mlp4(F.relu(self.mlp3(h))).float()
        deformation, rest = h.split([self.sizes[0], sum(self.sizes[1:])], dim=-1)
        ov_raw, logit, vote_logit, scale_raw = (rest + self.biases).split(self.sizes[1:], dim=-1)
        deformation = deformation.unflatten(-1, (self.parts, POSE))  # B×K×M×6
        ov = geometric_transform(ov_raw)  # B×K×3×3
        op = geometric_transform(deformation + self.static_op)  # B×K×M×3×3
        # OV_k · OP_km, top two rows: one batched product per object (not B·K·M tiny 3×3 ones)
        votes = torch.einsum("bkil,bkmlj->bkmij", ov[:, :, :2], op).flatten(-2)  # B×K×M×6
        logit = logit.squeeze(-1)
        if noise is not None:
            logit, vote_logit = logit + noise[0], vote_logit + noise[1]
        log_presence = F.logsigmoid(logit).unsqueeze(-1) + F.logsigmoid(vote_logit)  # log a_km, B×K×M
        return {
            "votes": votes,
            "scales": F.softplus(scale_raw + 0.5) + 0.01,
            "log_presence": log_presence,
            "presence": log_presence.exp().amax(-1),  # the object's presence: max_m a_km, B×K
            "dynamic_l2": 0.5 * deformation.pow(2).sum() / len(h),
        }


class SCAENet(nn.Module):
    def __init__(self, parts: PartCapsules, objects: ObjectCapsules, shape: InputShape) -> None:
        super().__init__()
        self.backbone = parts.backbone  # the engine's and the probes' handle on the encoder CNN
        self.part_capsules = parts
        self.object_capsules = objects
        # the run's channel statistics, to undo the views' standardisation: on the model's device
        # with it (no copy per step), not saved (every run recomputes them from its data)
        mean = shape.mean if shape.mean is not None else [0.0] * shape.channels
        std = shape.std if shape.std is not None else [1.0] * shape.channels
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)


class SCAE(DeepMethod):
    """The Stacked Capsule Autoencoder; clusters = k-means on the object capsules' presences."""

    augmented = False  # the paper's only augmentation is the canvas shift, made here
    own_assignment = True  # cluster=own: k-means on the object presences (the paper's read-out)
    views_needed = 1
    signed_features = False  # presences in [0, 1]: the health check's cosine would cry collapse

    def __init__(
        self,
        num_clusters: Optional[int] = None,
        kmeans_restarts: int = 3,
        part_capsules: int = 40,
        object_capsules: int = 32,
        special_features: int = 16,
        template_size: int = 11,
        template_nonlin: str = "sigmoid",
        canvas_size: Optional[int] = None,
        random_shift: bool = True,
        presence_noise: float = 4.0,
        pixel_std: float = 1.0,
        set_layers: int = 3,
        set_heads: int = 1,
        set_dim: int = 16,
        set_output_dim: int = 256,
        capsule_params: int = 32,
        capsule_hidden: int = 128,
        part_mixture: str = "official",
        caps_ll_weight: float = 1.0,
        dynamic_l2_weight: float = 10.0,
        prior_within_weight: float = 2.0,
        prior_between_weight: float = 0.35,
        posterior_within_weight: float = 0.7,
        posterior_between_weight: float = 0.2,
        prior_within_constant: Optional[float] = None,
    ) -> None:
        super().__init__(num_clusters, kmeans_restarts)
        for key, value in (("part_capsules", part_capsules), ("object_capsules", object_capsules), ("special_features", special_features),
                           ("template_size", template_size), ("set_layers", set_layers), ("set_heads", set_heads), ("set_dim", set_dim),
                           ("set_output_dim", set_output_dim), ("capsule_params", capsule_params), ("capsule_hidden", capsule_hidden)):
            require_positive(f"method.{key}", value)
        if canvas_size is not None:
            require_positive("method.canvas_size", canvas_size)
        for key, value in (("set_dim", set_dim), ("set_output_dim", set_output_dim)):
            if value % set_heads:
                raise ConfigError(f"method.{key}", f"{value} is not divisible by method.set_heads={set_heads}; the heads split it evenly")
        for key, value in (("presence_noise", presence_noise), ("caps_ll_weight", caps_ll_weight), ("dynamic_l2_weight", dynamic_l2_weight),
                           ("prior_within_weight", prior_within_weight), ("prior_between_weight", prior_between_weight),
                           ("posterior_within_weight", posterior_within_weight), ("posterior_between_weight", posterior_between_weight)):
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"method.{key}", f"{value} must be a finite number ≥ 0")
        if not math.isfinite(pixel_std) or pixel_std <= 0:
            raise ConfigError("method.pixel_std", f"{pixel_std} is not a standard deviation; use a positive value (the code: 1)")
        if prior_within_constant is not None and (not math.isfinite(prior_within_constant) or prior_within_constant < 0):
            raise ConfigError("method.prior_within_constant", f"{prior_within_constant} must be ≥ 0 (or null: K / clusters)")
        part_mixture = str(getattr(part_mixture, "value", part_mixture))
        if part_mixture not in PART_MIXTURES:
            raise ConfigError("method.part_mixture", f"'{part_mixture}' is not one of {', '.join(PART_MIXTURES)}")
        template_nonlin = str(getattr(template_nonlin, "value", template_nonlin))
        if template_nonlin not in TEMPLATE_NONLINS:
            raise ConfigError("method.template_nonlin", f"'{template_nonlin}' is not one of {', '.join(TEMPLATE_NONLINS)}")
        self.parts, self.objects, self.special = int(part_capsules), int(object_capsules), int(special_features)
        self.template_size, self.template_nonlin = int(template_size), template_nonlin
        self.canvas_size, self.random_shift = canvas_size, bool(random_shift)
        self.presence_noise, self.pixel_std = float(presence_noise), float(pixel_std)
        self.set_args = dict(layers=int(set_layers), heads=int(set_heads), dim=int(set_dim), out_dim=int(set_output_dim),
                             params=int(capsule_params), hidden=int(capsule_hidden))
        self.part_mixture = part_mixture
        self.weights = {"caps_ll": float(caps_ll_weight), "dynamic_l2": float(dynamic_l2_weight),
                        "prior_within": float(prior_within_weight), "prior_between": float(prior_between_weight),
                        "posterior_within": float(posterior_within_weight), "posterior_between": float(posterior_between_weight)}
        self.prior_within_constant = prior_within_constant
        self.classes = 10  # the sparsity targets' class count, fixed by configure_clusters
        self.noise = RankStream(salt=29)  # presence noise and canvas shifts (on the device, checkpointed)
        self.image_size, self.canvas = 0, 0

    def configure_clusters(self, k: int) -> None:
        self.classes = k

    def setup(self, backbone: nn.Module, shape: InputShape) -> nn.Module:
        self.image_size = shape.size
        self.canvas = int(self.canvas_size) if self.canvas_size is not None else shape.size
        if self.canvas < shape.size:
            raise ConfigError("method.canvas_size", f"{self.canvas} px is smaller than the {shape.size}-px images; use ≥ {shape.size} or null")
        with torch.no_grad():
            probe = backbone(torch.zeros(1, shape.channels, self.canvas, self.canvas))
        map_shape = (probe.shape[1], 1, 1) if probe.dim() == 2 else tuple(probe.shape[1:])
        parts = PartCapsules(backbone, map_shape, self.parts, self.special, self.template_size, shape.channels, self.canvas, self.template_nonlin)
        part_input = POSE + 1 + self.special + shape.channels * self.template_size**2
        objects = ObjectCapsules(self.parts, self.objects, part_input, **self.set_args)
        return SCAENet(parts, objects, shape)

    # --- the model ---------------------------------------------------------------------------

    def place(self, x: torch.Tensor, training: bool) -> torch.Tensor:
        """Standardised images → pixels in [0, 1] on the zero canvas: at a uniformly random
        offset in training (the code's pad_and_shift), centred otherwise."""
        net: SCAENet = self.model  # type: ignore[assignment]
        pixels = x.float() * net.std + net.mean
        b, c, s, _ = pixels.shape
        room = self.canvas - s
        if room == 0:
            return pixels
        if training and self.random_shift:
            offset = self.noise.integers(room + 1, b, 2, device=x.device)  # B×2: (row, column)
        else:
            offset = torch.full((b, 2), room // 2, device=x.device)
        rows = (offset[:, :1] + torch.arange(s, device=x.device)).unsqueeze(2)  # B×s×1
        cols = (offset[:, 1:] + torch.arange(s, device=x.device)).unsqueeze(1)  # B×1×s
        index = (rows * self.canvas + cols).flatten(1).unsqueeze(1).expand(-1, c, -1)  # B×C×s²
        canvas = pixels.new_zeros(b, c, self.canvas * self.canvas)
        return canvas.scatter(2, index, pixels.flatten(2)).view(b, c, self.canvas, self.canvas)

    def forward(self, x: torch.Tensor, training: bool, reconstruct: bool = True) -> dict[str, Any]:
        """Both autoencoders on standardised images x: every quantity the loss and read-out need
        (``reconstruct=False``: not the image's mixture, which the read-out does not use)."""
        net: SCAENet = self.model  # type: ignore[assignment]
        b = len(x)
        canvas = self.place(x, training)
        noisy = training and self.presence_noise > 0
        half = self.presence_noise / 2
        draw = (lambda *shape: self.noise.uniform(b, *shape, device=x.device, low=-half, high=half)) if noisy else None
        parts = net.part_capsules.encode(canvas.to(x.dtype), draw(self.parts) if draw else None)
        if reconstruct:
            means, mixing, background, intensity = net.part_capsules.decode(parts)
            image_ll = pixel_mixture_log_likelihood(canvas, means, mixing, self.pixel_std, background)
        else:
            means = mixing = background = image_ll = None
            intensity = net.part_capsules.intensities(parts)

        templates = net.part_capsules.template_images().flatten(1)  # M×T²
        coloured = (templates.unsqueeze(0).unsqueeze(2) * intensity.unsqueeze(-1)).flatten(2)  # B×M×C·T²
        pose = pose_vector(parts["pose"])  # B×M×6
        presence = parts["presence"]
        part_input = torch.cat([pose.detach(), (1.0 - presence).detach().unsqueeze(-1), parts["features"], coloured.detach()], dim=-1)
        objects = net.object_capsules(part_input.to(x.dtype), presence.detach(),
                                      (draw(self.objects), draw(self.objects, self.parts)) if draw else None)
        parts_ll, posterior = part_mixture_log_likelihood(pose.detach(), presence.detach(), objects["votes"], objects["scales"],
                                                          objects["log_presence"], normalized=self.part_mixture == "paper")
        return {"canvas": canvas, "parts": parts, "means": means, "mixing": mixing, "background": background, "image_ll": image_ll,
                "objects": objects, "parts_ll": parts_ll, "posterior": posterior}

    def losses(self, out: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The code's loss and its terms, from ``forward``'s output."""
        w = self.weights
        presence = out["objects"]["presence"]
        b = len(presence)
        constant = self.prior_within_constant if self.prior_within_constant is not None else self.objects / self.classes
        prior_within, prior_between = prior_sparsity(presence, constant, b / self.classes)
        posterior_within, posterior_between = posterior_sparsity(out["posterior"])
        image_ll, parts_ll, dynamic_l2 = out["image_ll"].mean(), out["parts_ll"].mean(), out["objects"]["dynamic_l2"]
        loss = (-image_ll - w["caps_ll"] * parts_ll + w["dynamic_l2"] * dynamic_l2
                + w["prior_within"] * prior_within + w["prior_between"] * prior_between
                + w["posterior_within"] * posterior_within - w["posterior_between"] * posterior_between)
        return {"loss": loss, "image_ll": image_ll, "parts_ll": parts_ll, "dynamic_l2": dynamic_l2,
                "prior_within": prior_within, "prior_between": prior_between,
                "posterior_within": posterior_within, "posterior_between": posterior_between}

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.noise.bind(self.seed, self.dist)
        out = self.forward(batch.views[0], training=True)
        terms = self.losses(out)
        with torch.no_grad():
            logged = {k: v.detach() for k, v in terms.items() if k != "loss"}
            logged["part_presence"] = out["parts"]["presence"].float().sum(1).mean()  # parts per image
            logged["object_presence"] = out["objects"]["presence"].float().sum(1).mean()  # objects per image
        return {"loss": terms["loss"], **logged}

    # --- read-out --------------------------------------------------------------------------

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """[object presences max_m a_km (K) | the posterior's per-object sums Σ_m (K)], noise-free,
        the image centred on the canvas."""
        out = self.forward(x, training=False, reconstruct=False)
        return torch.cat([out["objects"]["presence"].float(), out["posterior"].float().sum(1)], dim=1)

    def predict(self, features: torch.Tensor, k: int, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
        """k-means on the object presences (un-normalised, as the code); k-means on the
        posterior sums beside it (``posterior_*``)."""
        prior, posterior = features[:, : self.objects].float(), features[:, self.objects :].float()
        result = kmeans(prior, k, restarts=self.kmeans_restarts, seed=seed)
        alternative = kmeans(posterior, k, restarts=self.kmeans_restarts, seed=seed).assignments.cpu().numpy()
        state = kmeans_state(result.centroids, normalize=False, columns=self.objects)
        return result.assignments.cpu().numpy(), {"inertia": result.inertia, "clusters": state,
                                                   "alternatives": {"posterior": alternative}}

    def samples(self) -> Optional[tuple[np.ndarray, str, str]]:
        """The M learned part templates after their non-linearity, 10 to a row (part r·10 + c):
        what the parts learned to draw (strokes on MNIST)."""
        net: SCAENet = self.model  # type: ignore[assignment]
        with torch.no_grad():
            t = net.part_capsules.template_images().float().cpu()  # M×1×T×T
        cols = min(10, self.parts)
        rows = math.ceil(self.parts / cols)
        grid = torch.zeros(rows * cols, *t.shape[1:])
        grid[: self.parts] = t
        pixels = (grid * 255).round().to(torch.uint8).numpy().reshape(rows, cols, *t.shape[1:])
        return pixels, "row {}", f"SCAE's {self.parts} part templates (part = 10·row + column), black 0 to white 1"

    def method_state(self) -> dict[str, Any]:
        state = self.noise.state()
        return {"noise_gen": state} if state is not None else {}

    def load_method_state(self, state: dict[str, Any]) -> None:
        self.noise.load(state.get("noise_gen"))
