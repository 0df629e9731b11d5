"""A default recipe for a dataset clusterbench has no recipe for (a user's folder or array).

Such datasets choose ``augment=auto``: nothing is known of the images until they are loaded,
so the view recipe, and for the contrastive methods the backbone, are chosen here from the
loaded images' channel count and size, and the run says which:

- augmentation: greyscale images get the ``mnist`` recipe (no colour, no flip: glyphs and
  scans are not mirror-invariant); colour images get ``mocov2``, without blur up to 64 px
  (the MoCo CIFAR demo drops it: at 32 px a σ of 2 px erases the object);
- backbone: a method whose default is the ``strided`` net keeps it up to 64 px (it sizes
  itself to the image); above that, ``resnet18`` (ImageNet stem), what STL-10 and
  ImageNet-Dog recipes use. ``backbone=...`` on the command line always wins.

The composed config is left as Hydra made it (its hash identifies the run); the resolved
choices travel beside it and are recorded in metrics.json and model.pt.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf

from clusterbench.config import BACKBONE_SCHEMAS, STAGE_SCHEMAS, AugmentConfig, ResNetConfig, StridedConvNetConfig
from clusterbench.errors import ConfigError

log = logging.getLogger(__name__)
SMALL = 64  # px: up to here the small nets and blur-free colour views


@dataclass
class Recipe:
    augment: DictConfig
    backbone: DictConfig
    chosen: dict[str, str]  # what was chosen automatically, and why ({} when nothing was)


def group_option(group: str, name: str, schema: Any) -> DictConfig:
    """``conf/<group>/<name>.yaml`` as a typed node, as Hydra would compose it."""
    text = (resources.files("clusterbench.conf") / group / f"{name}.yaml").read_text()
    node = OmegaConf.create(text)
    node.pop("defaults", None)
    return OmegaConf.merge(OmegaConf.structured(schema), node)


def user_groups(overrides: Sequence[str]) -> set[str]:
    """The config groups chosen on the command line (``backbone=...``, ``+augment=...``)."""
    return {o.split("=", 1)[0].lstrip("+~") for o in overrides if "=" in o}


def _typed_option(group: str, name: str) -> DictConfig:
    """``conf/<group>/<name>.yaml`` under the schema its defaults name (/schema/<group>/<schema>)."""
    try:
        text = (resources.files("clusterbench.conf") / group / f"{name}.yaml").read_text()
    except FileNotFoundError:
        raise ConfigError(f"recipe_{group}", f"'{name}' is not a {group} option (conf/{group}/)") from None
    defaults = OmegaConf.create(text).get("defaults") or []
    schema_name = next((str(d).split("/")[-1].split("@")[0] for d in defaults if str(d).startswith(f"/schema/{group}/")), "base")
    schemas = {"augment": {"base": AugmentConfig}, "backbone": BACKBONE_SCHEMAS}[group]
    return group_option(group, name, schemas.get(schema_name, schemas["base"]))


def _with_user_settings(node: DictConfig, group: str, cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """The command line's ``<group>.key=value`` settings over a recipe's option, as Hydra would
    have put them over the group's default. ``+backbone.width=16`` is the form for a key the
    group's default lacks (Hydra refuses ``backbone.width=16`` on the strided net); the value
    is the one Hydra parsed into ``cfg``."""
    keys = [o.split("=", 1)[0].lstrip("+") for o in overrides if "=" in o and o.lstrip("+").startswith(f"{group}.")]
    for key in keys:
        try:
            OmegaConf.update(node, key.split(".", 1)[1], OmegaConf.select(cfg, key), merge=True)
        except Exception as err:  # a key the recipe's option has not: its schema says which
            raise ConfigError(key, f"{err}".splitlines()[0]) from None
    return node


def recipe_option(node: Any, group: str) -> tuple[str, dict[str, Any]]:
    """A recipe's ``recipe_<group>``: an option name (``recipe_backbone: resnet18``) or the name
    with settings over it (``recipe_backbone: {option: resnet18, cifar_stem: true}``)."""
    if isinstance(node, str):
        return node, {}
    settings = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    if not isinstance(settings, dict):
        raise ConfigError(f"recipe_{group}", f"{node!r} is neither a conf/{group}/ option name nor {{option: <name>, <settings>}}")
    settings = dict(settings)
    option = settings.pop("option", None)
    if not isinstance(option, str):
        raise ConfigError(f"recipe_{group}.option", f"names the conf/{group}/ option, e.g. recipe_{group}: {{option: <name>, <settings>}}")
    return option, settings


def _recipe_node(cfg: DictConfig, group: str, overrides: Sequence[str]) -> tuple[DictConfig, str]:
    """``conf/<group>/<option>.yaml`` with the recipe's settings, then the command line's, over
    it; and how the choice reads in the run's record."""
    option, settings = recipe_option(cfg.get(f"recipe_{group}"), group)
    node = _typed_option(group, option)
    try:
        node = OmegaConf.merge(node, settings)
    except Exception as err:  # an unknown or mistyped setting: the schema says which
        raise ConfigError(f"recipe_{group}.{getattr(err, 'key', '')}", f"{err}".splitlines()[0]) from None
    node = _with_user_settings(node, group, cfg, overrides)
    shown = ", ".join(f"{k}={v}" for k, v in settings.items())
    user = [o.lstrip("+") for o in overrides if "=" in o and o.lstrip("+").startswith(f"{group}.")]
    return node, (f"{option}{f' ({shown})' if shown else ''} (the recipe's; {group}=... picks another)"
                  + (f"; from the command line: {' '.join(user)}" if user else ""))


def recipe_groups(cfg: DictConfig, overrides: Sequence[str]) -> tuple[DictConfig, DictConfig, dict[str, str]]:
    """The augmentation and backbone after the method × dataset recipe's own choices
    (``recipe_augment``, ``recipe_backbone``: an option, or ``{option: ..., <its settings>}``);
    ``augment=`` / ``backbone=`` on the command line win, and ``augment.*`` / ``backbone.*``
    settings on the command line go over the recipe's."""
    user = user_groups(overrides)
    chosen: dict[str, str] = {}
    nodes = {"augment": cfg.augment, "backbone": cfg.backbone}
    for group in nodes:
        if cfg.get(f"recipe_{group}") is not None and group not in user:
            nodes[group], chosen[group] = _recipe_node(cfg, group, overrides)
    for what, why in chosen.items():
        log.info("%s: %s", what, why)
    return nodes["augment"], nodes["backbone"], chosen


def resolve_recipe(cfg: DictConfig, image_shape: Sequence[int], overrides: Sequence[str], deep: bool) -> Recipe:
    """The augmentation and backbone this run uses: the recipe's choices, then ``augment=auto``
    resolved from the images."""
    augment, backbone, recipe_chosen = recipe_groups(cfg, overrides) if deep else (cfg.augment, cfg.backbone, {})
    if str(augment.name) != "auto" or not deep:
        return Recipe(augment, backbone, recipe_chosen)
    channels, size = int(image_shape[0]), int(image_shape[1])
    chosen: dict[str, str] = {}
    if channels == 1:
        augment = group_option("augment", "mnist", AugmentConfig)
        chosen["augment"] = "mnist (greyscale images: crop, small affine, brightness/contrast; no flip, no colour)"
    else:
        augment = group_option("augment", "mocov2", AugmentConfig)
        if size <= SMALL:
            augment.blur = 0.0
            chosen["augment"] = f"mocov2 without blur (colour images of {size} px ≤ {SMALL})"
        else:
            chosen["augment"] = f"mocov2 (colour images of {size} px)"
    augment.name = "auto"  # keep the config's choice visible; the recipe above is recorded beside it
    user_backbone = "backbone" in user_groups(overrides) or "backbone" in recipe_chosen
    if str(backbone.name) == "strided" and not user_backbone:
        if size > SMALL:
            backbone = group_option("backbone", "resnet18", ResNetConfig)
            chosen["backbone"] = f"resnet18 (images of {size} px > {SMALL}; backbone=... picks another)"
        else:
            backbone = OmegaConf.merge(OmegaConf.structured(StridedConvNetConfig), backbone)
            widths = backbone.get("widths")
            shape = f"sized to {size} px" if widths is None else f"widths {list(widths)}"
            chosen["backbone"] = f"strided, {shape} (backbone=... picks another)"
    for what, why in chosen.items():
        log.info("no recipe for %s: %s %s", cfg.dataset.name, what, why)
    return Recipe(augment, backbone, {**recipe_chosen, **chosen})


def recipe_stage(node: DictConfig) -> DictConfig:
    """The clustering stage a method × dataset recipe reads its clusters with
    (``recipe_cluster: {option: scan, <settings>}``): ``conf/cluster/<option>.yaml`` with the
    recipe's settings over it, as ``cluster=<option> cluster.<key>=...`` would compose it."""
    settings = OmegaConf.to_container(node, resolve=True)
    assert isinstance(settings, dict)
    option = settings.pop("option", None)
    if option not in STAGE_SCHEMAS:
        raise ConfigError("recipe_cluster.option", f"'{option}' is not a clustering stage; use one of {', '.join(STAGE_SCHEMAS)}")
    base = group_option("cluster", option, STAGE_SCHEMAS[option])
    try:
        return OmegaConf.merge(base, settings)
    except Exception as err:  # an unknown or mistyped setting: the schema says which
        raise ConfigError(f"recipe_cluster.{getattr(err, 'key', '')}", f"{err}".splitlines()[0]) from None
