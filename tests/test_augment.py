"""Batched augmentation (clusterbench.data.augment): shapes, ranges, seeding, hand-checkable ops, recipes, errors."""

from __future__ import annotations

import math
from importlib import resources

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from clusterbench.config import AugmentConfig, register_schemas
from clusterbench.data.augment import GRAY_WEIGHTS, Augmenter, affine_grid, affine_theta, standardize
from clusterbench.errors import ConfigError

# The identity recipe; tests switch single ops on over it.
NONE = {
    "name": "test", "global_crops": 1, "global_scale": [1.0, 1.0], "ratio": [1.0, 1.0], "hflip": 0.0,
    "jitter": 0.0, "brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.0,
    "grayscale": 0.0, "blur": 0.0, "solarize": 0.0,
}

# Single ops, each with probability 1, that every check below runs on 1 and 3 channels.
OPS = {
    "crop": {"global_scale": [0.2, 1.0], "ratio": [0.75, 4 / 3]},
    "hflip": {"hflip": 1.0},
    "affine": {"rotate": 30.0, "translate": 0.2},
    "brightness": {"jitter": 1.0, "brightness": 0.8},
    "contrast": {"jitter": 1.0, "contrast": 0.8},
    "saturation": {"jitter": 1.0, "saturation": 0.8},
    "hue": {"jitter": 1.0, "hue": 0.5},
    "jitter": {"jitter": 1.0, "brightness": 0.8, "contrast": 0.8, "saturation": 0.8, "hue": 0.2},
    "grayscale": {"grayscale": 1.0},
    "blur": {"blur": 1.0, "blur_sigma": [0.5, 2.0]},
    "solarize": {"solarize": 1.0},
    "mocov2": {"global_scale": [0.2, 1.0], "ratio": [0.75, 4 / 3], "hflip": 0.5, "jitter": 0.8, "brightness": 0.4,
               "contrast": 0.4, "saturation": 0.4, "hue": 0.1, "grayscale": 0.2, "blur": 0.5},
}

RECIPES = ("mocov2", "multicrop", "mnist", "none")


def recipe(**changes) -> dict:
    return {**NONE, **changes}


def augmenter(channels: int = 3, size: int = 16, **changes) -> Augmenter:
    """Identity standardisation (mean 0, std 1), so the views are the [0, 1] images themselves."""
    return Augmenter(recipe(**changes), size, channels, [0.0] * channels, [1.0] * channels)


def images(n: int = 6, channels: int = 3, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, channels, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def as_float(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255


def load_recipe(name: str):
    """A conf/augment YAML merged onto the typed schema, as Hydra's defaults list would."""
    text = (resources.files("clusterbench.conf") / "augment" / f"{name}.yaml").read_text()
    raw = OmegaConf.create(text)
    assert list(raw.defaults) == ["/schema/augment/base@_here_", "_self_"]
    raw.pop("defaults")
    return OmegaConf.merge(OmegaConf.structured(AugmentConfig), raw)


# --- standardize -----------------------------------------------------------------------


def test_standardize_uint8_and_float_agree():
    x = images(channels=3)
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    out = standardize(x, mean, std)
    assert out.dtype == torch.float32 and out.shape == x.shape
    expected = (as_float(x) - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(standardize(as_float(x), mean, std), expected)
    floats = as_float(x)
    standardize(floats, mean, std)
    assert torch.equal(floats, as_float(x)), "standardize must not change its float input"


# --- shapes, dtypes, ranges --------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("op", sorted(OPS))
def test_each_op_keeps_shape_dtype_and_range(op, channels):
    aug = augmenter(channels, global_crops=2, **OPS[op])
    views = aug(images(channels=channels), gen())
    assert len(views) == 2 == aug.num_views == aug.num_global
    for v in views:
        assert v.shape == (6, channels, 16, 16) and v.dtype == torch.float32
        assert v.min() >= 0 and v.max() <= 1  # mean 0, std 1: the clamped [0, 1] images
        assert torch.isfinite(v).all()


def test_multicrop_gives_global_then_local_views():
    aug = Augmenter(load_recipe("multicrop"), 32, 3, [0.5] * 3, [0.25] * 3)
    assert (aug.num_global, aug.num_views, aug.global_size, aug.local_size) == (2, 8, 32, 14)  # 14 = round(32·3/7)
    views = aug(images(n=4, size=32), gen())
    assert [tuple(v.shape) for v in views] == [(4, 3, 32, 32)] * 2 + [(4, 3, 14, 14)] * 6
    assert all(v.dtype == torch.float32 for v in views)


def test_sizes_follow_the_recipe_and_default_to_the_image():
    assert Augmenter(recipe(local_crops=1), 224, 3, [0] * 3, [1] * 3).local_size == 96  # SwAV's 96 of 224
    assert Augmenter(recipe(local_crops=1), 28, 1, [0], [1]).local_size == 12
    aug = augmenter(3, size=16, global_size=24, local_crops=3, local_size=8)
    assert [v.shape[-1] for v in aug(images(), gen())] == [24, 8, 8, 8]


# --- seeding and independence --------------------------------------------------------------


@pytest.mark.parametrize("name", ["mocov2", "multicrop", "mnist"])
def test_same_seed_same_views_other_seed_other_views(name):
    cfg = load_recipe(name)
    channels = 1 if name == "mnist" else 3
    aug = Augmenter(cfg, 16, channels, [0.5] * channels, [0.25] * channels)
    x = images(channels=channels)
    first, again, other = aug(x, gen(7)), aug(x, gen(7)), aug(x, gen(8))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert all(not torch.equal(a, b) for a, b in zip(first, other))


def test_samples_and_views_get_independent_parameters():
    aug = Augmenter(load_recipe("mocov2"), 16, 3, [0.5] * 3, [0.25] * 3)
    x = images(n=1).expand(8, 3, 16, 16).contiguous()  # eight copies of one image
    v1, v2 = aug(x, gen())
    for views in (v1, v2):
        flat = views.flatten(1)
        assert torch.cdist(flat, flat).add(torch.eye(8) * 1e9).min() > 1e-3  # no two samples alike
    assert not torch.equal(v1, v2)


# --- hand-checkable cases ------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
def test_none_recipe_is_standardize(channels):
    cfg = load_recipe("none")
    mean, std = [0.3] * channels, [0.2] * channels
    aug = Augmenter(cfg, 16, channels, mean, std)
    x = images(channels=channels)
    views = aug(x, gen())
    assert len(views) == 2
    for v in views:
        torch.testing.assert_close(v, standardize(x, mean, std), atol=1e-5, rtol=0)


def test_hflip_with_whole_image_is_torch_flip():
    x = images()
    (view,) = augmenter(hflip=1.0)(x, gen())
    torch.testing.assert_close(view, torch.flip(as_float(x), dims=[3]), atol=1e-5, rtol=0)


def test_grayscale_is_the_601_weighted_sum():
    x = images()
    (view,) = augmenter(grayscale=1.0)(x, gen())
    f = as_float(x)
    luma = GRAY_WEIGHTS[0] * f[:, 0] + GRAY_WEIGHTS[1] * f[:, 1] + GRAY_WEIGHTS[2] * f[:, 2]
    assert GRAY_WEIGHTS == (0.299, 0.587, 0.114)
    for c in range(3):
        torch.testing.assert_close(view[:, c], luma, atol=1e-5, rtol=0)


def test_grayscale_saturation_and_hue_do_nothing_on_one_channel():
    x = images(channels=1)
    ops = {"grayscale": 1.0, "jitter": 1.0, "saturation": 0.9, "hue": 0.5}
    (view,) = augmenter(1, **ops)(x, gen())
    torch.testing.assert_close(view, as_float(x), atol=1e-5, rtol=0)


def test_solarize_inverts_pixels_at_or_above_the_threshold():
    values = torch.tensor([0, 64, 127, 128, 192, 255], dtype=torch.uint8)  # 128/255 ≥ 0.5 > 127/255
    x = values.view(1, 1, 1, 6).expand(2, 1, 6, 6).contiguous()
    (view,) = augmenter(1, size=6, solarize=1.0, solarize_threshold=0.5)(x, gen())
    f = values.float() / 255
    expected = torch.where(f >= 0.5, 1 - f, f).view(1, 1, 1, 6).expand(2, 1, 6, 6)
    torch.testing.assert_close(view, expected, atol=1e-5, rtol=0)


def test_blur_keeps_a_constant_image_constant():
    x = torch.full((4, 3, 16, 16), 77, dtype=torch.uint8)
    (view,) = augmenter(blur=1.0, blur_sigma=[0.5, 3.0])(x, gen())
    torch.testing.assert_close(view, torch.full_like(view, 77 / 255), atol=1e-5, rtol=0)


@pytest.mark.parametrize("side", [16, 80])  # below and above BLUR_MATMUL_MAX_SIDE
def test_blur_matches_torchvision_gaussian_blur(side):
    tf = pytest.importorskip("torchvision.transforms.functional")
    x = images(n=3, size=side)
    sigma = 1.5
    (view,) = augmenter(size=side, blur=1.0, blur_sigma=[sigma, sigma])(x, gen())
    radius = math.ceil(3 * sigma)
    expected = tf.gaussian_blur(as_float(x), kernel_size=[2 * radius + 1] * 2, sigma=[sigma, sigma])
    torch.testing.assert_close(view, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("side", [16, 80])  # matmul and conv paths
def test_blur_paths_agree_with_each_other(side):
    from clusterbench.data.augment import _blur_conv

    aug = augmenter(blur=1.0, blur_sigma=[0.3, 2.0])
    x = torch.rand(3, 2, side, side, generator=gen())
    sigma = torch.tensor([0.3, 1.0, 2.0]).view(3, 1)
    d = torch.arange(-aug.blur_radius, aug.blur_radius + 1.0)
    kernel = torch.exp(-(d**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum(1, keepdim=True)
    torch.testing.assert_close(aug._blur_matmul(x, kernel), _blur_conv(x, kernel), atol=1e-5, rtol=0)


def test_brightness_scales_each_sample_by_one_factor_in_range():
    x = (images(n=8).float() * 0.5).round().to(torch.uint8)  # ≤ 128: even 1.5× stays below 1, no clamping
    (view,) = augmenter(jitter=1.0, brightness=0.5)(x, gen())
    f = as_float(x)
    mask = f > 0.05
    factors = [(view[i][mask[i]] / f[i][mask[i]]) for i in range(8)]
    for ratio in factors:
        assert ratio.max() - ratio.min() < 1e-4  # one factor per sample ...
        assert 0.5 - 1e-5 <= ratio.mean() <= 1.5 + 1e-5  # ... in [1 − b, 1 + b]
    assert len({round(float(r.mean()), 4) for r in factors}) == 8  # ... drawn independently


def test_contrast_keeps_the_mean_luma_and_saturation_keeps_greys():
    x = (images(n=4).float() * 0.5 + 64).round().to(torch.uint8)  # mid-range: no clamping at 1.5×
    (view,) = augmenter(jitter=1.0, contrast=0.5)(x, gen())
    luma = torch.tensor(GRAY_WEIGHTS).view(1, 3, 1, 1)
    torch.testing.assert_close((view * luma).sum(1).mean((1, 2)), (as_float(x) * luma).sum(1).mean((1, 2)), atol=1e-5, rtol=0)
    grey = images(n=4)[:, :1].expand(4, 3, 16, 16).contiguous()
    (view,) = augmenter(jitter=1.0, saturation=0.9, hue=0.5)(grey, gen())
    torch.testing.assert_close(view, as_float(grey), atol=1e-5, rtol=0)


def test_yiq_hue_rotation_turns_the_way_torchvision_does():
    from clusterbench.data.augment import _yiq_chroma_matrix

    tf = pytest.importorskip("torchvision.transforms.functional")
    x = torch.rand(3, 16, 16, generator=gen()) * 0.6 + 0.2
    ref = tf.adjust_hue(x, 0.08)
    errors = []
    for sign in (-1, 1):  # the Augmenter uses −2π·shift
        matrix = _yiq_chroma_matrix(torch.ones(1), torch.tensor([sign * 2 * math.pi * 0.08]))[0]
        errors.append((torch.einsum("ij,jhw->ihw", matrix, x) - ref).abs().mean())
    assert errors[0] < 0.06 and errors[0] < errors[1] / 2  # close to HSV's turn, far from the opposite one


def test_jitter_probability_zero_leaves_images_exactly_alone():
    x = images()
    (view,) = augmenter(jitter=0.0, brightness=0.8, contrast=0.8, saturation=0.8, hue=0.3)(x, gen())
    assert torch.equal(view, as_float(x))


def test_rotation_fills_outside_with_black_and_mnist_recipe_keeps_digits_upright():
    white = torch.full((16, 1, 16, 16), 255, dtype=torch.uint8)
    (view,) = augmenter(1, rotate=45.0)(white, gen())
    assert (view[:, 0, 0, 0] < 0.5).float().mean() > 0.5  # corners rotated in from outside the image
    assert torch.allclose(view[:, 0, 6:10, 6:10], torch.ones(16, 4, 4))  # the centre stays inside
    aug = Augmenter(load_recipe("mnist"), 28, 1, [0.1307], [0.3081])
    assert aug.recipe["hflip"] == 0 and aug.recipe["rotate"] > 0
    assert [tuple(v.shape) for v in aug(images(channels=1, size=28), gen())] == [(6, 1, 28, 28)] * 2


def test_affine_theta_composes_rotation_crop_and_flip():
    x = torch.arange(64.0).view(1, 1, 8, 8)
    whole = torch.tensor([[0.0, 0.0, 8.0, 8.0]])

    def warp(theta: torch.Tensor, size: int = 8) -> torch.Tensor:
        return F.grid_sample(x, affine_grid(theta, size), align_corners=False, padding_mode="border")

    turned = warp(affine_theta(whole, 8, 8, angle=torch.tensor([math.pi / 2])))
    torch.testing.assert_close(turned, torch.rot90(x, -1, dims=(2, 3)), atol=1e-4, rtol=0)  # clockwise as shown
    box = torch.tensor([[2.0, 4.0, 4.0, 4.0]])  # x0, y0, w, h: rows 4-7, columns 2-5
    torch.testing.assert_close(warp(affine_theta(box, 8, 8), size=4), x[:, :, 4:8, 2:6], atol=1e-4, rtol=0)
    flipped = warp(affine_theta(box, 8, 8, flip=torch.tensor([True])), size=4)
    torch.testing.assert_close(flipped, torch.flip(x[:, :, 4:8, 2:6], dims=[3]), atol=1e-4, rtol=0)
    shifted = warp(affine_theta(whole, 8, 8, shift=torch.tensor([[2.0, 0.0]])))
    torch.testing.assert_close(shifted[..., 2:], x[..., :6], atol=1e-4, rtol=0)  # content moves right by 2 px


def test_affine_grid_matches_torch():
    theta = torch.randn(5, 2, 3, generator=gen())
    for size in (1, 7, 16):
        torch.testing.assert_close(affine_grid(theta, size), F.affine_grid(theta, [5, 1, size, size], align_corners=False),
                                   atol=1e-5, rtol=0)


def test_crop_boxes_follow_scale_and_ratio_and_fall_back_to_the_centre():
    aug = augmenter(global_scale=[0.2, 0.5], ratio=[0.5, 2.0])
    box = aug.crop_boxes(2000, 20, 30, (0.2, 0.5), gen(), torch.device("cpu"))
    x0, y0, w, h = box.unbind(1)
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x0 + w <= 30 + 1e-4).all() and (y0 + h <= 20 + 1e-4).all()
    area = w * h / 600
    assert area.min() >= 0.2 - 1e-5 and area.max() <= 0.5 + 1e-5
    assert (w / h).min() >= 0.5 - 1e-5 and (w / h).max() <= 2.0 + 1e-5
    assert x0.std() > 1 and (w / h).std() > 0.1  # spread out, not one box
    # No candidate can fit: a 1:4 box of the whole area. torchvision's fallback: the central crop
    # with the ratio clamped into range, here 4 wide (the full width would need 16 rows).
    tall = augmenter(global_scale=[1.0, 1.0], ratio=[4.0, 4.0])
    box = tall.crop_boxes(3, 16, 16, (1.0, 1.0), gen(), torch.device("cpu"))
    torch.testing.assert_close(box, torch.tensor([[0.0, 6.0, 16.0, 4.0]] * 3))


# --- recipes ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_composes_and_runs(name):
    cfg = load_recipe(name)
    assert cfg.name == name
    for channels in (1, 3):
        aug = Augmenter(cfg, 16, channels, [0.5] * channels, [0.25] * channels)
        views = aug(images(n=3, channels=channels), gen())
        assert len(views) == aug.num_views == cfg.global_crops + cfg.local_crops
    # Hydra composes the file through the schema as well (as the config group will).
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    register_schemas()
    with initialize_config_module(config_module="clusterbench.conf", version_base="1.3"):
        composed = hydra_compose(config_name=f"augment/{name}").augment
    assert OmegaConf.to_container(composed) == OmegaConf.to_container(cfg)


def test_recipe_values_from_the_papers():
    moco, swav, mnist = load_recipe("mocov2"), load_recipe("multicrop"), load_recipe("mnist")
    assert (moco.global_scale, moco.jitter, moco.hue, moco.grayscale, moco.blur) == ([0.2, 1.0], 0.8, 0.1, 0.2, 0.5)
    assert (swav.global_crops, swav.local_crops, swav.global_scale, swav.local_scale) == (2, 6, [0.14, 1.0], [0.05, 0.14])
    assert (swav.brightness, swav.hue) == (0.8, 0.2)
    assert (mnist.hflip, mnist.saturation, mnist.blur) == (0.0, 0.0, 0.0)


# --- errors -----------------------------------------------------------------------------

BAD = [
    ("global_crops", 0), ("global_crops", -1), ("global_crops", 1.5), ("local_crops", -2),
    ("global_size", 0), ("local_size", -8),
    ("global_scale", [0.0, 1.0]), ("global_scale", [0.5, 0.2]), ("global_scale", [0.2, 1.5]), ("global_scale", [0.5]),
    ("local_scale", [-0.1, 0.2]), ("ratio", [0.0, 1.0]), ("ratio", [2.0, 1.0]),
    ("hflip", 1.5), ("jitter", -0.1), ("grayscale", 2), ("blur", -1), ("solarize", 1.01),
    ("rotate", -5), ("rotate", 270), ("translate", 1.5), ("brightness", -0.1), ("contrast", -1),
    ("saturation", -0.5), ("hue", 0.6), ("hue", -0.1), ("blur_sigma", [0.0, 1.0]), ("blur_sigma", [2.0, 1.0]),
    ("solarize_threshold", 1.5), ("hflip", "often"), ("hflip", float("nan")), ("name", ""),
]


@pytest.mark.parametrize(("key", "value"), BAD, ids=[f"{k}={v}" for k, v in BAD])
def test_bad_values_name_the_key(key, value):
    with pytest.raises(ConfigError) as err:
        Augmenter(recipe(**{key: value}), 16, 3, [0.5] * 3, [0.25] * 3)
    assert err.value.key == f"augment.{key}"
    assert str(err.value).startswith(f"augment.{key}: ")


def test_unknown_and_missing_keys_are_config_errors():
    with pytest.raises(ConfigError, match="augment.hflp: unknown key"):
        Augmenter(recipe(hflp=0.5), 16, 3, [0.5] * 3, [0.25] * 3)
    with pytest.raises(ConfigError, match="augment.name: is missing"):
        Augmenter(OmegaConf.structured(AugmentConfig), 16, 3, [0.5] * 3, [0.25] * 3)


def test_misuse_is_a_value_error():
    aug = augmenter(3)
    with pytest.raises(ValueError, match="N×3×H×W"):
        aug(images(channels=1), gen())
    with pytest.raises(ValueError, match="mean and std"):
        Augmenter(recipe(), 16, 3, [0.5], [0.25])


def test_blurring_every_sample_gives_the_views_of_blurring_the_drawn_ones():
    # the GPU path (no nonzero(): no host sync) blurs the undrawn samples by an exact identity
    cfg = load_recipe("mocov2")
    x = torch.randint(0, 256, (24, 3, 16, 16), dtype=torch.uint8)
    picked = Augmenter(cfg, 16, 3, [0.5] * 3, [0.25] * 3)
    every = Augmenter(cfg, 16, 3, [0.5] * 3, [0.25] * 3)
    picked.blur_every_sample, every.blur_every_sample = False, True
    a, b = picked(x, torch.Generator().manual_seed(1)), every(x, torch.Generator().manual_seed(1))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
