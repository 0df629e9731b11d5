"""Every deep method × benchmark dataset has a recipe that ``method=M dataset=D`` picks, that says
where its numbers come from, that the command line overrides, and that trains on data of its
dataset's real shape (two steps on tiny files in the real formats)."""

from __future__ import annotations

import math
import sys
from enum import Enum
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra.utils import get_class
from omegaconf import DictConfig, ListConfig, OmegaConf

sys.path.insert(0, str(Path(__file__).parent))
import formats  # noqa: E402

from clusterbench.methods.deep import DeepMethod  # noqa: E402
from clusterbench.recipes import recipe_groups, recipe_option  # noqa: E402

CONF = resources.files("clusterbench.conf")
RGB = ["cifar10", "cifar100", "stl10", "imagenet_dog"]
DATASETS = [*RGB, "mnist", "digits"]


def options(group: str) -> list[str]:
    return sorted(p.name[: -len(".yaml")] for p in (CONF / group).iterdir() if p.name.endswith(".yaml"))


def deep_methods() -> list[str]:
    """Every method option whose class trains a network: a method added later is covered too."""
    return [m for m in options("method") if issubclass(get_class(OmegaConf.load(str(CONF / "method" / f"{m}.yaml"))._target_), DeepMethod)]


METHODS = deep_methods()

# The pairs no paper or official script gives settings for: their recipes say so on the first line.
SOURCELESS = {
    *(f"ae_{d}" for d in RGB),  # no DEC-family paper trains on these sets' raw pixels
    *(f"pcl_{d}" for d in RGB),  # PCL: ImageNet only
    "moco_stl10", "moco_imagenet_dog",  # MoCo: ImageNet and a CIFAR-10 demo
    "swav_stl10", "swav_imagenet_dog", "deepcluster_stl10", "deepcluster_imagenet_dog",  # solo-learn: CIFAR only
    "mice_imagenet_dog",  # in the paper, not in the official code
    *(f"infogan_{d}" for d in (*RGB, "digits")),  # InfoGAN clusters MNIST only
    *(f"scae_{d}" for d in (*RGB, "digits")),  # SCAE's official code ships MNIST's settings only
    # digits is this project's offline demo set; on MNIST only the reference study's MoCo and AE(GMM) have settings
    *(f"{m}_digits" for m in ("moco", "pcl", "swav", "deepcluster", "mice")), "pcl_mnist", "swav_mnist", "deepcluster_mnist", "mice_mnist",
}


def recipe_text(name: str) -> str:
    return (CONF / "method_dataset" / f"{name}.yaml").read_text(encoding="utf-8")


def recipe(name: str) -> dict[str, Any]:
    node = OmegaConf.to_container(OmegaConf.load(str(CONF / "method_dataset" / f"{name}.yaml")))
    assert isinstance(node, dict)
    return node


def leaves(node: dict, prefix: str = "") -> dict[str, Any]:
    """dotted key → value; the recipe_* choices stay whole (they are read at run time)."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and not str(key).startswith("recipe_"):
            out.update(leaves(value, f"{path}."))
        else:
            out[path] = value
    return out


def plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True, enum_to_str=True)
    return value


def same(a: Any, b: Any) -> bool:
    a, b = plain(a), plain(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    return a == b


def test_every_deep_method_has_a_recipe_for_every_dataset():
    assert {"moco", "pcl", "swav", "deepcluster", "mice", "ae"} <= set(METHODS)
    missing = [f"{m}_{d}" for m in METHODS for d in DATASETS if f"{m}_{d}" not in options("method_dataset")]
    assert not missing, f"no recipe for {missing}"


def group_default(method: str, dataset: str, key: str) -> Any:
    """What ``key`` is without the recipe, where the group's own file sets it (else None)."""
    group, _, rest = key.partition(".")
    file = {"method": f"method/{method}", "trainer": "trainer/default", "dataset": f"dataset/{dataset}"}.get(group)
    return None if file is None else OmegaConf.select(group_file(file), rest)


@lru_cache(maxsize=None)
def group_file(name: str) -> DictConfig:
    return OmegaConf.load(str(CONF / f"{name}.yaml"))


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("method", METHODS)
def test_method_and_dataset_pick_their_recipe_and_the_command_line_wins(compose, method, dataset):
    name, pair = f"{method}_{dataset}", [f"method={method}", f"dataset={dataset}"]
    cfg = compose(*pair)
    values = leaves(recipe(name))
    for key, value in values.items():  # every setting of the file is in the composed config
        assert same(OmegaConf.select(cfg, key), value), f"{name}: {key} is {OmegaConf.select(cfg, key)}, the recipe says {value}"
    changed = [k for k, v in values.items() if k.startswith("recipe_") or group_default(method, dataset, k) not in (None, v)]
    assert changed, f"{name} changes nothing the method, trainer and dataset files set"

    # what the recipe's recipe_backbone / recipe_augment choose is what a run uses
    augment, backbone, chosen = recipe_groups(cfg, pair)
    for group, node in (("backbone", backbone), ("augment", augment)):
        if cfg.get(f"recipe_{group}") is not None:
            option, settings = recipe_option(cfg[f"recipe_{group}"], group)
            assert node.name == option and chosen[group].startswith(option)
            assert all(same(node[k], v) for k, v in settings.items()), f"{name}: recipe_{group} settings not applied"

    # the command line over the recipe: one of its settings (a method.* one where it has any), and
    # backbone= / augment= over recipe_backbone / recipe_augment
    numbers = [(k, v) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k.split(".")[0] in ("method", "trainer")]
    key, value = sorted(numbers, key=lambda kv: not kv[0].startswith("method."))[0]
    other = value + 1 if isinstance(value, int) else value / 2
    user = [*pair, f"{key}={other}", "backbone=strided", "augment=none"]
    cfg = compose(*user)
    assert same(OmegaConf.select(cfg, key), other)
    augment, backbone, chosen = recipe_groups(cfg, user)
    assert backbone.name == "strided" and augment.name == "none" and not chosen


@pytest.mark.parametrize("method", ["moco", "mice", "ae"])
def test_backbone_settings_on_the_command_line_go_over_the_recipes_choice(compose, method):
    """backbone.key=value (+backbone.key=value where the method's default net lacks the key) lands
    on the recipe's backbone; the record says so."""
    key = {"ae": "backbone.hidden=[64,32]"}.get(method, "+backbone.width=16")
    user = [f"method={method}", "dataset=cifar10", key]
    _, backbone, chosen = recipe_groups(compose(*user), user)
    assert backbone.name == recipe_option(recipe(f"{method}_cifar10")["recipe_backbone"], "backbone")[0]
    if method == "ae":
        assert list(backbone.hidden) == [64, 32]
    else:
        assert backbone.width == 16 and backbone.cifar_stem is True and "backbone.width=16" in chosen["backbone"]
    user = ["method=moco", "dataset=cifar10", "+recipe_backbone.depth=34"]  # or the recipe's own settings
    assert recipe_groups(compose(*user), user)[1].depth == 34


@pytest.mark.parametrize("name", [f"{m}_{d}" for m in METHODS for d in DATASETS])
def test_every_recipe_opens_with_its_source(name):
    lines = recipe_text(name).splitlines()
    assert lines[0] == "# @package _global_"  # Hydra reads the package only from the opening lines
    assert lines[1].startswith("# Source: "), f"{name}: the first comment must be '# Source: ...'"
    source = lines[1][len("# Source: "):]
    if name in SOURCELESS:
        assert source.startswith("none for this pair — ") and "closest" in source.lower(), f"{name}: flag it and name the closest"
    else:
        assert "none for this pair" not in source and ("/" in source or "et al." in source), f"{name}: cite a script or paper"


@pytest.mark.parametrize("name", [f"{m}_stl10" for m in METHODS])
def test_stl10_recipes_say_whether_they_train_on_the_unlabelled_split(name):
    assert isinstance(recipe(name).get("dataset", {}).get("unlabeled"), bool), f"{name}: set dataset.unlabeled explicitly"
    assert "unlabelled" in recipe_text(name)


@pytest.mark.parametrize("dataset", RGB)
def test_mice_recipes_state_both_temperatures_and_keep_kappa_equal_to_tau(dataset):
    method = recipe(f"mice_{dataset}")["method"]
    assert method["gating_temperature"] == method["temperature"] == 1.0  # the paper's τ = κ = 1 (official ELBO.py: κ = τ)
    assert "κ = τ" in recipe_text(f"mice_{dataset}")


# --- two steps of every RGB recipe on tiny files in the dataset's real format -----------------


@pytest.fixture(scope="module")
def tiny_roots(tmp_path_factory) -> dict[str, Path]:
    """CIFAR-10 3×32×32 (16 images, 10 classes), CIFAR-100 3×32×32 (32 images, the 20
    super-classes), STL-10 3×96×96 (16 labelled + 16 unlabelled), ImageNet-Dog (15 breeds,
    decoded to 3×96×96)."""
    roots = {d: tmp_path_factory.mktemp(d) for d in RGB}
    formats.write_cifar10(roots["cifar10"], per_batch=3, n_test=1)
    formats.write_cifar100(roots["cifar100"], n_train=28, n_test=4)
    formats.write_stl10(roots["stl10"], n_train=8, n_test=8, n_unlabeled=16)
    formats.write_imagenet_dog(roots["imagenet_dog"], per_class=2)
    return roots


# Only sizes shrink: the net's width, the prototype and cluster counts the 16–32 images cannot hold,
# PCL's warm-up (so its E-step runs). Views, method and optimiser stay the recipe's.
SHRINK = {
    "ae": ["backbone.hidden=[64,64,128]", "method.decoder_hidden=[128,64,64]"],
    "pcl": ["+backbone.width=8", "method.num_prototypes=[4,8]", "method.warmup_epochs=0"],
    "deepcluster": ["+backbone.width=8", "method.num_prototypes=8"],
    "infogan": ["backbone.width=8", "backbone.hidden=32", "method.noise_dim=8"],  # its own body is the method's default backbone
    "scae": ["backbone.widths=[8,8,8,8]", "method.part_capsules=6", "method.object_capsules=4", "method.set_output_dim=16"],
}
IMAGES = {"cifar10": 16, "cifar100": 32, "stl10": 16, "imagenet_dog": 16}  # labelled images fitted and scored
SHAPES = {"cifar10": (3, 32, 32), "cifar100": (3, 32, 32), "stl10": (3, 96, 96), "imagenet_dog": (3, 96, 96)}
CLASSES = {"cifar10": 10, "cifar100": 20, "stl10": 10, "imagenet_dog": 15}


@pytest.mark.parametrize("dataset", RGB)
@pytest.mark.parametrize("method", METHODS)
def test_every_rgb_recipe_trains_two_steps_on_its_datasets_shape(run_cli, tiny_roots, method, dataset):
    name = f"{method}_{dataset}"
    file = recipe(name)
    unlabeled = bool(file.get("dataset", {}).get("unlabeled"))
    train = IMAGES[dataset] + (16 if unlabeled else 0)
    r = run_cli(f"method={method}", f"dataset={dataset}", f"dataset.root={tiny_roots[dataset]}",
                *(["dataset.limit=16"] if dataset == "imagenet_dog" else []),
                "hardware=cpu", "hardware.threads=1", "trainer.epochs=1", f"trainer.batch_size={train // 2}", "trainer.eval_every=0",
                "trainer.checkpoint_every=0", "export.features=false", "export.model=false", "export.clusters=false",
                "export.assignments_csv=false", "save_assignments=false", *SHRINK.get(method, ["+backbone.width=8"]))
    assert r.code == 0, r.err[-3000:]
    m = r.metrics()
    assert m["method_info"]["steps"] == 2 and m["method_info"]["epochs"] == 1
    assert m["n_samples"] == IMAGES[dataset] and m["n_train_only"] == (16 if unlabeled else 0) and m["n_classes"] == CLASSES[dataset]
    assert f"images {SHAPES[dataset]}" in r.out + r.err  # the loader's line: N images (C, H, W)
    # the recipe's views and backbone ran, not the defaults
    for group in ("augment", "backbone"):
        option, settings = recipe_option(file[f"recipe_{group}"], group)
        assert m["recipe"][group].startswith(option), m["recipe"]
    views = recipe_option(file["recipe_augment"], "augment")
    if views[0] == "multicrop":
        assert "6 × " in m["plan"]["views"] and "multi-crop" in m["plan"]["views"]
    if method == "mice":
        assert m["plan"]["views"].startswith("mocov2: 3 × ")
    assert torch.isfinite(torch.tensor(m["nmi"]))
