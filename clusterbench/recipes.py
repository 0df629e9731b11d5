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

from clusterbench.config import STAGE_SCHEMAS, AugmentConfig, ResNetConfig, StridedConvNetConfig
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


def resolve_recipe(cfg: DictConfig, image_shape: Sequence[int], overrides: Sequence[str], deep: bool) -> Recipe:
    """The augmentation and backbone this run uses; ``augment=auto`` is resolved from the images."""
    if str(cfg.augment.name) != "auto" or not deep:
        return Recipe(cfg.augment, cfg.backbone, {})
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
    backbone = cfg.backbone
    user_backbone = any(o.split("=", 1)[0] in ("backbone", "+backbone") for o in overrides)
    if str(cfg.backbone.name) == "strided" and not user_backbone:
        if size > SMALL:
            backbone = group_option("backbone", "resnet18", ResNetConfig)
            chosen["backbone"] = f"resnet18 (images of {size} px > {SMALL}; backbone=... picks another)"
        else:
            backbone = OmegaConf.merge(OmegaConf.structured(StridedConvNetConfig), cfg.backbone)
            widths = cfg.backbone.get("widths")
            shape = f"sized to {size} px" if widths is None else f"widths {list(widths)}"
            chosen["backbone"] = f"strided, {shape} (backbone=... picks another)"
    for what, why in chosen.items():
        log.info("no recipe for %s: %s %s", cfg.dataset.name, what, why)
    return Recipe(augment, backbone, chosen)


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
