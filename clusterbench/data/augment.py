"""Batched, on-device view generation for the contrastive and clustering methods.

One call turns a uint8 batch N×C×H×W into the views of a recipe (``conf/augment/*.yaml``,
schema ``clusterbench.config.AugmentConfig``): ``global_crops`` views at ``global_size`` and
``local_crops`` views at ``local_size`` (SwAV's multi-crop, Caron et al. 2020), each
standardised. The pipeline follows MoCo v2 (Chen et al. 2020, "Improved Baselines with
Momentum Contrastive Learning") and SimCLR: random resized crop, horizontal flip, colour
jitter, random grayscale, Gaussian blur, optionally solarize (BYOL) and a small rotation and
translation (for digits, which must not be flipped).

Why batched: per-sample PIL transforms in DataLoader workers cost more than the small
networks trained on 32-pixel images; here every step is a tensor op over the whole batch
on the images' device, so it runs on the GPU beside the model, and on the CPU it is
vectorised. Geometry (crop, flip, rotation, translation) is one affine matrix per sample,
one sampling grid (``affine_grid``, F.affine_grid's values built faster) and one
``grid_sample`` straight to the output size: one resampling, no intermediate image. The
uint8 → float conversion happens once. Colour jitter and grayscale are one 3×3 matrix per
sample, the blur two batched matmuls (depthwise convs for views over 64 px).

Every random parameter is drawn per sample (per view) from the caller's ``torch.Generator``
in a fixed order, so a seed gives bit-identical views on a given device, and samples (and
views) of one batch are independent.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from clusterbench.errors import ConfigError

# ITU-R BT.601 luma weights, as PIL's convert("L") and torchvision's rgb_to_grayscale use.
GRAY_WEIGHTS = (0.299, 0.587, 0.114)

# RandomResizedCrop candidates drawn per sample; the first that fits wins (torchvision tries
# 10 times in a loop too). With scale ≥ 0.05 and ratio within [3/4, 4/3] on a square image
# every candidate fits, so the central-crop fallback only matters for extreme recipes.
CROP_TRIES = 10

# Blur by band-matrix matmuls up to this view side, by depthwise convs above it (measured
# crossover on the CPU between 64 and 96 px: the matmul's cost per pixel grows with the side).
BLUR_MATMUL_MAX_SIDE = 64

# SwAV's local crops are 96 px for 224 px global crops.
LOCAL_SIZE_FRACTION = 3 / 7

PROBABILITIES = ("hflip", "jitter", "grayscale", "blur", "solarize")
JITTER_STRENGTHS = ("brightness", "contrast", "saturation")


def _default_recipe() -> dict[str, Any]:
    """AugmentConfig's defaults, for keys a hand-written recipe leaves out."""
    from clusterbench.config import AugmentConfig  # config imports Hydra; keep it off import time

    out = {}
    for f in dataclasses.fields(AugmentConfig):
        if f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
        elif f.default is not dataclasses.MISSING and f.default != "???":
            out[f.name] = f.default
    out.setdefault("name", "custom")
    return out


def standardize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (or float in [0, 1]) N×C×H×W → float32 ``(x/255 − mean)/std`` per channel, same device."""
    if images.ndim != 4:
        raise ValueError(f"standardize expects N×C×H×W images, got shape {tuple(images.shape)}")
    x = images.float()
    if images.dtype == torch.uint8:
        x = x.div_(255.0)
    return _normalise_(x if x is not images else x.clone(), mean, std)


def _normalise_(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """In place (x − mean)/std on float N×C×H×W."""
    c = x.shape[1]
    if len(mean) != c or len(std) != c:
        raise ValueError(f"mean and std need one value per channel ({c}), got {len(mean)} and {len(std)}")
    m = torch.tensor([float(v) for v in mean], dtype=x.dtype, device=x.device).view(1, c, 1, 1)
    s = torch.tensor([float(v) for v in std], dtype=x.dtype, device=x.device).view(1, c, 1, 1)
    return x.sub_(m).div_(s)


# --- recipe checks ---------------------------------------------------------------------


def _number(cfg: Mapping[str, Any], key: str) -> float:
    v = cfg[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(f"augment.{key}", f"must be a finite number, got {v!r}")
    return float(v)


def _integer(cfg: Mapping[str, Any], key: str, minimum: int, hint: str) -> int:
    v = cfg[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ConfigError(f"augment.{key}", f"must be an integer ≥ {minimum}, got {v!r}; {hint}")
    return int(v)


def _size(cfg: Mapping[str, Any], key: str, default: int) -> int:
    if cfg[key] is None:
        return default
    return _integer(cfg, key, 1, "set a positive side length in pixels, or null for the default")


def _probability(cfg: Mapping[str, Any], key: str) -> float:
    v = _number(cfg, key)
    if not 0.0 <= v <= 1.0:
        raise ConfigError(f"augment.{key}", f"is a probability and must lie in [0, 1], got {v}")
    return v


def _pair(cfg: Mapping[str, Any], key: str) -> tuple[float, float]:
    v = cfg[key]
    if isinstance(v, (str, bytes)) or not isinstance(v, Sequence) or len(v) != 2:
        raise ConfigError(f"augment.{key}", f"must be a [low, high] pair, got {v!r}")
    lo, hi = (_number({key: x}, key) for x in v)
    if lo > hi:
        raise ConfigError(f"augment.{key}", f"low must not exceed high, got [{lo}, {hi}]; swap them")
    return lo, hi


def _scale(cfg: Mapping[str, Any], key: str) -> tuple[float, float]:
    lo, hi = _pair(cfg, key)
    if not 0.0 < lo <= hi <= 1.0:
        raise ConfigError(f"augment.{key}", f"is an area fraction and needs 0 < low ≤ high ≤ 1, got [{lo}, {hi}]")
    return lo, hi


def check_recipe(recipe: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe as a plain dict with every field, checked; bad values raise ConfigError("augment.<key>")."""
    if OmegaConf.is_config(recipe):
        recipe = OmegaConf.to_container(recipe, resolve=True)  # type: ignore[assignment]
    if not isinstance(recipe, Mapping):
        raise ConfigError("augment", f"must be a mapping of recipe fields, got {type(recipe).__name__}")
    cfg = _default_recipe()
    unknown = sorted(set(recipe) - set(cfg))
    if unknown:
        raise ConfigError(f"augment.{unknown[0]}", f"unknown key; the recipe fields are {', '.join(sorted(cfg))}")
    cfg.update(recipe)
    for key, value in cfg.items():
        if isinstance(value, str) and value == "???":  # OmegaConf's MISSING
            raise ConfigError(f"augment.{key}", "is missing: set it in the recipe or on the command line")
    if not isinstance(cfg["name"], str) or not cfg["name"]:
        raise ConfigError("augment.name", f"must be a non-empty string, got {cfg['name']!r}")
    _integer(cfg, "global_crops", 1, "every method needs at least one global view (MoCo v2 and SwAV use 2)")
    _integer(cfg, "local_crops", 0, "use 0 for no SwAV local crops")
    for key in ("global_scale", "local_scale"):
        cfg[key] = _scale(cfg, key)
    cfg["ratio"] = _pair(cfg, "ratio")
    if cfg["ratio"][0] <= 0:
        raise ConfigError("augment.ratio", f"aspect ratios must be > 0, got {list(cfg['ratio'])}; e.g. [0.75, 1.3333333]")
    for key in PROBABILITIES:
        cfg[key] = _probability(cfg, key)
    rotate = _number(cfg, "rotate")
    if not 0.0 <= rotate <= 180.0:
        raise ConfigError("augment.rotate", f"is the largest rotation in degrees and must lie in [0, 180], got {rotate}")
    translate = _number(cfg, "translate")
    if not 0.0 <= translate <= 1.0:
        raise ConfigError("augment.translate", f"is a fraction of the image size and must lie in [0, 1], got {translate}")
    for key in JITTER_STRENGTHS:
        if _number(cfg, key) < 0:
            raise ConfigError(f"augment.{key}", f"is a jitter strength and must be ≥ 0 (0 turns it off), got {cfg[key]}")
    hue = _number(cfg, "hue")
    if not 0.0 <= hue <= 0.5:
        raise ConfigError("augment.hue", f"is a shift in turns of the colour wheel and must lie in [0, 0.5], got {hue}")
    cfg["blur_sigma"] = _pair(cfg, "blur_sigma")
    if cfg["blur_sigma"][0] <= 0:
        raise ConfigError("augment.blur_sigma", f"σ must be > 0 pixels, got {list(cfg['blur_sigma'])}; e.g. [0.1, 2.0]")
    threshold = _number(cfg, "solarize_threshold")
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError("augment.solarize_threshold", f"is in [0, 1] intensity units, got {threshold}")
    return cfg


# --- the augmenter ---------------------------------------------------------------------


class Draws:
    """The per-sample random numbers of one batch of views, from one generator.

    A batch holds ``count`` views of N images, view-major (sample ``v·N + j`` is view v of
    image j). With ``shard = (rank, world)`` the N images are one rank's share of a global
    batch of world·N: each draw is made for the whole global batch, in the order one process
    would make it, and the rank keeps its rows. The numbers are a few per sample, so drawing
    world× of them costs nothing beside the pixels; with world = 1 the draws are exactly
    ``torch.rand(count·N·per_sample)``.
    """

    def __init__(self, generator: torch.Generator, device: torch.device, count: int = 1, shard: tuple[int, int] = (0, 1)) -> None:
        rank, world = shard
        if not 0 <= rank < world:
            raise ValueError(f"shard {shard} is not (rank, world) with 0 ≤ rank < world")
        self.generator, self.device, self.count, self.rank, self.world = generator, device, count, rank, world

    def uniform(self, b: int, lo: float, hi: float, per_sample: int = 1) -> torch.Tensor:
        """``b`` (= count·N) samples' draws, uniform in [lo, hi): shape b, or b×per_sample."""
        if b % self.count:
            raise ValueError(f"{b} samples do not hold {self.count} views of the same images")
        n = b // self.count
        u = torch.rand(self.count, self.world, n, per_sample, generator=self.generator, device=self.device)[:, self.rank]
        u = u.reshape(b, per_sample) if per_sample > 1 else u.reshape(b)
        return u.mul_(hi - lo).add_(lo)

    def coin(self, b: int, p: float) -> torch.Tensor:
        """``b`` samples' Bernoulli(p) draws, bool."""
        return self.uniform(b, 0.0, 1.0) < p


class Augmenter:
    """Views of a batch by one recipe: ``Augmenter(recipe, image_size, channels, mean, std)(images, generator)``.

    ``num_global`` views at ``global_size`` come first, then the ``num_views − num_global``
    local views at ``local_size`` (SwAV multi-crop). Views of the same size are produced
    together, as one batch of (views × N) samples, to amortise the per-op overhead.
    """

    def __init__(
        self, recipe: Mapping[str, Any], image_size: int, channels: int, mean: Sequence[float], std: Sequence[float]
    ) -> None:
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"image_size must be a positive int, got {image_size!r}")
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive int, got {channels!r}")
        if len(mean) != channels or len(std) != channels or any(float(s) <= 0 for s in std):
            raise ValueError(f"mean and std need {channels} values each, std > 0; got {list(mean)} and {list(std)}")
        cfg = check_recipe(recipe)
        self.recipe = cfg
        self.name: str = cfg["name"]
        self.channels = channels
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]
        self.num_global: int = cfg["global_crops"]
        self.num_local: int = cfg["local_crops"]
        self.num_views: int = self.num_global + self.num_local
        self.global_size: int = _size(cfg, "global_size", image_size)
        self.local_size: int = _size(cfg, "local_size", max(1, round(image_size * LOCAL_SIZE_FRACTION)))
        # Truncate the Gaussian at 3 σ_max: the tails beyond hold < 0.3 % of the mass.
        self.blur_radius: int = math.ceil(3 * cfg["blur_sigma"][1])
        # Saturation, hue and grayscale mix colour channels: they mean nothing on 1 channel.
        self.colour = channels == 3
        self._folds: dict[tuple, torch.Tensor] = {}  # blur reflection matrices by (side, device, dtype)
        # blur every sample (the undrawn ones by an exact identity) instead of picking the drawn
        # ones with nonzero(), a host sync on a GPU; None: on CUDA devices only
        self.blur_every_sample: Optional[bool] = None

    def __repr__(self) -> str:
        return (f"Augmenter({self.name!r}, {self.num_global}×{self.global_size}px"
                f" + {self.num_local}×{self.local_size}px, channels={self.channels})")

    def __call__(self, images: torch.Tensor, generator: torch.Generator, shard: tuple[int, int] = (0, 1)) -> list[torch.Tensor]:
        """uint8 (or float in [0, 1]) N×C×H×W → ``[global views..., local views...]``, float32 N×C×s×s, standardised.

        ``shard = (rank, world)``: the images are rank's share (rows rank·N … (rank+1)·N − 1) of a
        global batch of world·N images. Every rank draws the global batch's random numbers from
        the same generator and keeps its rows, so an image's views do not depend on the number
        of ranks: a DDP run sees the views one process sees on the same global batch."""
        if images.ndim != 4 or images.shape[1] != self.channels:
            raise ValueError(f"expected N×{self.channels}×H×W images, got shape {tuple(images.shape)}")
        if generator.device.type != images.device.type:
            raise ValueError(f"the generator lives on {generator.device}, the images on {images.device}; "
                             f"use torch.Generator(device=images.device)")
        x = images.float()  # the one uint8 → float conversion
        if images.dtype == torch.uint8:
            x = x.div_(255.0)
        views = self._views(x, self.num_global, self.global_size, self.recipe["global_scale"], Draws(generator, x.device, self.num_global, shard))
        if self.num_local:
            views += self._views(x, self.num_local, self.local_size, self.recipe["local_scale"], Draws(generator, x.device, self.num_local, shard))
        return views

    # -- pipeline ----------------------------------------------------------------------

    def _views(self, x: torch.Tensor, count: int, size: int, scale: tuple[float, float], g: Draws) -> list[torch.Tensor]:
        """``count`` views of every image at ``size``, as one (count·N)-sample batch, view-major."""
        n, c = x.shape[:2]
        r = self.recipe
        src = torch.cat([x] * count) if count > 1 else x  # a plain copy; Tensor.repeat is several times slower
        out = self._geometry(src, size, scale, g)  # a fresh tensor: the steps below work in place
        if r["jitter"] > 0 or (self.colour and r["grayscale"] > 0):
            out = self._colour(out, g)
        if r["blur"] > 0:
            out = self._blur(out, g)
        if r["solarize"] > 0:
            out = self._solarize(out, g)
        out = _normalise_(out.clamp_(0.0, 1.0), self.mean, self.std)
        return list(out.view(count, n, c, size, size).unbind(0))

    def crop_boxes(self, b: int, height: int, width: int, scale: tuple[float, float], g: "Draws | torch.Generator",
                   device: torch.device) -> torch.Tensor:
        """RandomResizedCrop boxes, B×4 ``(x0, y0, w, h)`` in (sub-)pixels, vectorised.

        torchvision's semantics: area fraction uniform in ``scale``, aspect ratio log-uniform
        in ``ratio``, position uniform over where the box fits; of ``CROP_TRIES`` candidates
        per sample the first that fits is taken, else the largest central crop with the
        ratio clamped into range. Unlike torchvision the box is not rounded to whole pixels:
        grid_sample resamples sub-pixel boxes anyway.
        """
        if isinstance(g, torch.Generator):
            g = Draws(g, device)
        lo_r, hi_r = self.recipe["ratio"]
        area = g.uniform(b, *scale, per_sample=CROP_TRIES) * (height * width)
        log_ratio = g.uniform(b, math.log(lo_r), math.log(hi_r), per_sample=CROP_TRIES)
        ratio = log_ratio.exp()
        w = (area * ratio).sqrt()
        h = (area / ratio).sqrt()
        # A hair of slack so scale [1, 1] on a square image is not lost to rounding in sqrt.
        fits = (w <= width * (1 + 1e-6)) & (h <= height * (1 + 1e-6))
        first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # first True (0 when none)
        w = w.gather(1, first).squeeze(1).clamp_(max=width)
        h = h.gather(1, first).squeeze(1).clamp_(max=height)
        # Fallback: torchvision's central crop with the image's ratio clamped into range.
        in_ratio = width / height
        if in_ratio < lo_r:
            fw, fh = float(width), width / lo_r
        elif in_ratio > hi_r:
            fw, fh = height * hi_r, float(height)
        else:
            fw, fh = float(width), float(height)
        ok = fits.any(dim=1)
        w = torch.where(ok, w, torch.full_like(w, fw))
        h = torch.where(ok, h, torch.full_like(h, fh))
        x0 = g.uniform(b, 0.0, 1.0) * (width - w)
        y0 = g.uniform(b, 0.0, 1.0) * (height - h)
        x0 = torch.where(ok, x0, (width - w) / 2)
        y0 = torch.where(ok, y0, (height - h) / 2)
        return torch.stack([x0, y0, w, h], dim=1)

    def _geometry(self, x: torch.Tensor, size: int, scale: tuple[float, float], g: Draws) -> torch.Tensor:
        """Crop + flip + rotation + translation as one affine per sample, one grid_sample to size×size.

        The composed transform, read as the image would be processed: rotate by θ about the
        image centre and shift by t (RandomAffine), take the crop box (RandomResizedCrop),
        resize it to size×size and mirror it (RandomHorizontalFlip). affine_grid wants the
        inverse — output coordinates → input coordinates, both normalised to [−1, 1] with
        align_corners=False (±1 = the outer pixel edges) — so, in pixels centred on the
        image centre, an output point o ∈ [−1, 1]² maps to
            q = (cx + f·w/2·oₓ, cy + h/2·o_y)      (crop box centre (cx, cy), flip f = ±1)
            p = R(−θ)·(q − t)                       (undo the shift, then the rotation)
        and to normalised input coordinates (2pₓ/W, 2p_y/H).
        """
        b, c, height, width = x.shape
        device, r = x.device, self.recipe
        box = self.crop_boxes(b, height, width, scale, g, device)
        flip = g.coin(b, r["hflip"]) if r["hflip"] > 0 else None
        angle = g.uniform(b, -r["rotate"], r["rotate"]).deg2rad_() if r["rotate"] > 0 else None
        shift = None
        if r["translate"] > 0:
            shift = g.uniform(b, -r["translate"], r["translate"], per_sample=2)
            shift = shift * torch.tensor([width, height], device=device, dtype=shift.dtype)
        theta = affine_theta(box, height, width, flip=flip, angle=angle, shift=shift)
        grid = affine_grid(theta, size)
        # 'border' so an upsampled crop touching the edge replicates the edge pixels, as a
        # resize does, instead of fading into zeros over its outer half-pixel ...
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        if angle is not None or shift is not None:
            # ... while points that rotation or translation carry off the image read black,
            # RandomAffine's fill=0.
            inside = (grid.abs() <= 1).all(dim=-1).unsqueeze(1)
            out = out.mul_(inside)
        return out

    def _colour(self, x: torch.Tensor, g: Draws) -> torch.Tensor:
        """ColorJitter with probability ``jitter``, then RandomGrayscale with probability ``grayscale``.

        MoCo v2: jitter p 0.8 with brightness/contrast/saturation 0.4 and hue 0.1, grayscale p 0.2;
        SwAV: p 0.8 with 0.8/0.8/0.8/0.2. Factors are drawn per sample uniform in
        [max(0, 1 − s), 1 + s], the hue shift uniform in ±hue (turns of the colour wheel).

        The steps run in torchvision's fixed order brightness → contrast → saturation → hue,
        not in its random permutation per call: a per-sample permutation would evaluate every
        step at every position (4× the work) for no documented gain. Brightness is applied and
        clamped first, as torchvision does. Everything after it is linear in RGB, so contrast
        (blend with the image's mean luma), saturation (blend with the luma image), hue and
        grayscale compose into one 3×3 matrix plus offset per sample and one batched matmul,
        clamped once at the end; torchvision clamps after each step, which differs only where
        an intermediate step left [0, 1]. Hue is a rotation of the chroma plane in YIQ space
        (torchvision rotates the HSV hue; the two agree on greys and differ by a few percent
        on saturated colours), which keeps it a matrix. Saturation in YIQ is exact: the luma
        image is Y with I = Q = 0. One-channel images get brightness and contrast only.
        Samples not jittered get the identity and come out unchanged.
        """
        b, c = x.shape[:2]
        device, r = x.device, self.recipe
        eye = torch.eye(c, device=device, dtype=x.dtype).expand(b, c, c)
        matrix, offset = eye, None
        if r["jitter"] > 0:
            apply = g.coin(b, r["jitter"])

            def factors(strength: float) -> torch.Tensor:
                f = g.uniform(b, max(0.0, 1 - strength), 1 + strength)
                return torch.where(apply, f, torch.ones_like(f))

            if r["brightness"] > 0:
                x = x.mul_(factors(r["brightness"]).view(b, 1, 1, 1)).clamp_(0.0, 1.0)
            if r["contrast"] > 0:
                f = factors(r["contrast"])
                # torchvision's contrast pivot: the mean of the grayscale image.
                pivot = _luma_weights(c, x).view(1, c) @ x.mean(dim=(2, 3)).unsqueeze(2)
                offset = ((1 - f) * pivot.view(b)).view(b, 1, 1)
                matrix = f.view(b, 1, 1) * matrix
            if self.colour and (r["saturation"] > 0 or r["hue"] > 0):
                sat = factors(r["saturation"]) if r["saturation"] > 0 else torch.ones(b, device=device, dtype=x.dtype)
                if r["hue"] > 0:
                    turn = g.uniform(b, -r["hue"], r["hue"])
                    # −2π·turn: YIQ's chroma angle runs against HSV's hue, and torchvision
                    # shifts the HSV hue (red → yellow for positive shifts).
                    angle = torch.where(apply, turn, torch.zeros_like(turn)) * (-2 * math.pi)
                else:
                    angle = torch.zeros(b, device=device, dtype=x.dtype)
                chroma = _yiq_chroma_matrix(sat, angle)
                chroma = torch.where(apply.view(b, 1, 1), chroma, eye)  # exact identity when not jittered
                matrix = chroma @ matrix
        if self.colour and r["grayscale"] > 0:
            gray = g.coin(b, r["grayscale"])
            to_gray = _luma_weights(3, x).view(1, 3).expand(3, 3)  # each output channel = the luma
            matrix = torch.where(gray.view(b, 1, 1), to_gray @ matrix, matrix)
            # The contrast offset is a grey (equal in R, G, B) and grey stays grey: no change.
        out = torch.bmm(matrix.contiguous(), x.view(b, c, -1))
        if offset is not None:
            out = out.add_(offset)  # (baddbmm would first copy the broadcast offset into a full tensor)
        return out.view_as(x).clamp_(0.0, 1.0)

    def _blur(self, x: torch.Tensor, g: Draws) -> torch.Tensor:
        """Gaussian blur with probability ``blur``, σ uniform in ``blur_sigma`` pixels of the view.

        MoCo v2 and SwAV: p 0.5, σ ∈ [0.1, 2]. Separable, with a kernel per sample of radius
        ⌈3 σ_max⌉, edges reflected as torchvision's GaussianBlur does. On the CPU only the
        samples drawn for blurring are computed; on a GPU every sample is, the others with a
        one-tap kernel that copies them exactly (a 0/1 band matrix), because picking the drawn
        ones (``nonzero``) would make the host wait for the device at every step.
        """
        b, c, height, width = x.shape
        device, r = x.device, self.recipe
        apply = g.coin(b, r["blur"])
        sigma = g.uniform(b, *r["blur_sigma"])
        rad = self.blur_radius
        d = torch.arange(-rad, rad + 1, device=device, dtype=x.dtype)
        matmul = max(height, width) <= BLUR_MATMUL_MAX_SIDE or rad >= min(height, width)
        every = self.blur_every_sample if self.blur_every_sample is not None else device.type == "cuda"
        if every and matmul:
            kernel = torch.exp(-(d.view(1, -1) ** 2) / (2 * sigma.view(-1, 1) ** 2))
            kernel = kernel / kernel.sum(dim=1, keepdim=True)
            kernel = torch.where(apply.view(-1, 1), kernel, (d == 0).to(x.dtype).view(1, -1))  # the unchosen: identity
            return self._blur_matmul(x, kernel)
        chosen = apply.nonzero().squeeze(1)
        if chosen.numel() == 0:
            return x
        sigma = sigma.index_select(0, chosen)
        kernel = torch.exp(-(d.view(1, -1) ** 2) / (2 * sigma.view(-1, 1) ** 2))
        kernel = kernel / kernel.sum(dim=1, keepdim=True)
        sub = x.index_select(0, chosen)
        sub = self._blur_matmul(sub, kernel) if matmul else _blur_conv(sub, kernel)
        return x.index_copy_(0, chosen, sub)

    def _blur_matmul(self, x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        """Separable blur of n×C×H×W by per-sample 1-D kernels (n×K) as two batched matmuls.

        Each pass is a per-sample band matrix with the reflection folded in (so also radii
        beyond the image side work): no padded copy, and at CIFAR / MNIST sizes faster on
        the CPU than a depthwise conv with groups = n·C. The dense band matrix costs O(side)
        per pixel, hence the conv beyond BLUR_MATMUL_MAX_SIDE.
        """
        n, c, height, width = x.shape
        rows = (kernel @ self._fold(height, x.device, x.dtype)).view(n, height, height)  # row i weighs input row j
        cols = rows if width == height else (kernel @ self._fold(width, x.device, x.dtype)).view(n, width, width)
        x = torch.matmul(rows.unsqueeze(1), x)  # vertical pass, per channel
        x = torch.bmm(x.view(n, c * height, width), cols.transpose(1, 2))  # horizontal pass
        return x.view(n, c, height, width)

    def _fold(self, n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """(2r+1)×(n·n) 0/1: tap t of output i reads input mirror(i + t − r) (reflect padding, folded)."""
        key = (n, str(device), dtype)
        cached = self._folds.get(key)
        if cached is None:
            rad = self.blur_radius
            src = torch.arange(n).view(n, 1) + torch.arange(-rad, rad + 1).view(1, -1)  # n×K
            if n == 1:
                src = torch.zeros_like(src)
            else:
                period = 2 * (n - 1)  # reflect without repeating the edge, as often as needed
                src = torch.remainder(src, period)
                src = torch.where(src > n - 1, period - src, src)
            onehot = F.one_hot(src, n).to(dtype)  # n×K×n
            cached = onehot.permute(1, 0, 2).reshape(2 * rad + 1, n * n).to(device)
            self._folds[key] = cached
        return cached

    def _solarize(self, x: torch.Tensor, g: Draws) -> torch.Tensor:
        """Solarize with probability ``solarize`` (BYOL, DINO): pixels ≥ threshold become 1 − pixel."""
        b = x.shape[0]
        apply = g.coin(b, self.recipe["solarize"])
        threshold = torch.full((b,), float(self.recipe["solarize_threshold"]), device=x.device, dtype=x.dtype)
        threshold = torch.where(apply, threshold, torch.full_like(threshold, math.inf)).view(b, 1, 1, 1)
        return torch.where(x >= threshold, 1.0 - x, x)


def _blur_conv(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Separable blur of n×C×H×W by per-sample 1-D kernels (n×K): reflect padding, two depthwise convs (groups = n·C)."""
    n, c, height, width = x.shape
    k = kernel.shape[1]
    rad = k // 2
    weights = kernel.repeat_interleave(c, dim=0)  # one kernel per (sample, channel) group
    padded = F.pad(x, (rad, rad, rad, rad), mode="reflect").view(1, n * c, height + 2 * rad, width + 2 * rad)
    out = F.conv2d(padded, weights.view(n * c, 1, 1, k), groups=n * c)
    out = F.conv2d(out, weights.view(n * c, 1, k, 1), groups=n * c)
    return out.view(n, c, height, width)


def affine_theta(
    box: torch.Tensor,
    height: int,
    width: int,
    flip: torch.Tensor | None = None,
    angle: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
) -> torch.Tensor:
    """B×2×3 affine_grid matrices for crop boxes B×4 ``(x0, y0, w, h)`` in pixels of an H×W image.

    ``flip`` (B bools) mirrors the view; ``angle`` (B, radians) rotates the image about its
    centre and ``shift`` (B×2, pixels, (x, y)) then moves it, before the box is cut out.
    Positive angles turn the image clockwise as displayed (y runs down), as torchvision's
    rotate does for negative angles; the recipe draws ±rotate, so only the range matters.
    See ``Augmenter._geometry`` for the derivation.
    """
    half_w, half_h = box[:, 2] / 2, box[:, 3] / 2
    cx = box[:, 0] + half_w - width / 2  # box centre, in pixels from the image centre
    cy = box[:, 1] + half_h - height / 2
    if flip is not None:
        half_w = torch.where(flip, -half_w, half_w)
    if shift is not None:
        cx, cy = cx - shift[:, 0], cy - shift[:, 1]
    if angle is not None:
        cos, sin = angle.cos(), angle.sin()
    else:
        cos, sin = torch.ones_like(cx), torch.zeros_like(cx)
    sx, sy = 2.0 / width, 2.0 / height
    return torch.stack([
        torch.stack([sx * cos * half_w, sx * sin * half_h, sx * (cos * cx + sin * cy)], dim=1),
        torch.stack([-sy * sin * half_w, sy * cos * half_h, sy * (-sin * cx + cos * cy)], dim=1),
    ], dim=1)


def affine_grid(theta: torch.Tensor, size: int) -> torch.Tensor:
    """``F.affine_grid(theta, [B, C, size, size], align_corners=False)``, built by broadcasting.

    Same values (to float rounding), 3× faster on the CPU: F.affine_grid materialises a
    B×size×size×3 base grid and multiplies it in a bmm with inner dimension 3, which took
    about 30 % of a whole MoCo v2 augmentation call. Here x and y contributions are
    computed per column and per row and added once.
    """
    base = (torch.arange(size, device=theta.device, dtype=theta.dtype) * 2 + 1) / size - 1  # pixel centres
    t = theta.transpose(1, 2)  # B×3×2: x column, y column, offset
    along_x = base.view(1, size, 1) * t[:, 0:1, :]  # B×W×2
    along_y = torch.addcmul(t[:, 2:3, :], base.view(1, size, 1), t[:, 1:2, :])  # B×H×2
    return along_y.unsqueeze(2) + along_x.unsqueeze(1)  # B×H×W×2, last dim (x, y)


# YIQ (FCC NTSC): Y is the ITU-R 601 luma; the I and Q rows sum to 0, so greys have no chroma.
_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


def _chroma_basis() -> tuple[tuple[tuple[float, ...], ...], ...]:
    """Three RGB 3×3 matrices L, C, S with RGB←YIQ · diag(1, s·R(a)) · YIQ←RGB = L + s·cos a·C + s·sin a·S.

    Splitting the YIQ round trip into constant parts lets the per-sample matrices be built
    with two multiply-adds on the device, in its own dtype (no float64 or matrix inverse there).
    """
    yiq = torch.tensor(_YIQ, dtype=torch.float64)
    rgb = torch.linalg.inv(yiq)
    luma = torch.outer(rgb[:, 0], yiq[0])
    cos = torch.outer(rgb[:, 1], yiq[1]) + torch.outer(rgb[:, 2], yiq[2])
    sin = torch.outer(rgb[:, 2], yiq[1]) - torch.outer(rgb[:, 1], yiq[2])
    return tuple(tuple(tuple(row) for row in m.tolist()) for m in (luma, cos, sin))


_CHROMA_BASIS = _chroma_basis()


def _luma_weights(c: int, like: torch.Tensor) -> torch.Tensor:
    """Per-channel luma weights: ITU-R 601 for RGB, an equal mean for any other channel count."""
    if c == 3:
        return torch.tensor(GRAY_WEIGHTS, dtype=like.dtype, device=like.device)
    return torch.full((c,), 1.0 / c, dtype=like.dtype, device=like.device)


def _yiq_chroma_matrix(saturation: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """B×3×3 RGB matrices that scale YIQ chroma by ``saturation`` and rotate it by ``angle`` (radians)."""
    luma, cos, sin = (torch.tensor(m, dtype=angle.dtype, device=angle.device) for m in _CHROMA_BASIS)
    a = (saturation * angle.cos()).view(-1, 1, 1)
    b = (saturation * angle.sin()).view(-1, 1, 1)
    return luma + a * cos + b * sin


def view_sizes(augmenter: Augmenter) -> list[int]:
    """The side length of each view, in output order."""
    return [augmenter.global_size] * augmenter.num_global + [augmenter.local_size] * augmenter.num_local


__all__ = ["Augmenter", "standardize", "check_recipe", "view_sizes", "GRAY_WEIGHTS"]
