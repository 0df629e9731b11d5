"""Datasets: loaders for the real on-disk formats, chosen by the config's ``_target_``."""

from __future__ import annotations

from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf

from clusterbench.data.dataset import ImageDataset, stratified_subset
from clusterbench.errors import ConfigError

# Keys every dataset config has that are not the loader's arguments.
PROTOCOL_KEYS = ("_target_", "name", "limit")


def build_dataset(cfg: DictConfig, seed: int) -> ImageDataset:
    """Load the dataset ``cfg`` describes, then take the class-stratified ``limit`` subset."""
    loader = get_method(cfg._target_)
    kwargs = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k not in PROTOCOL_KEYS}
    kwargs = {k: getattr(v, "value", v) for k, v in kwargs.items()}  # str enums → plain strings
    if cfg.limit is not None and cfg.limit < 1:
        raise ConfigError("dataset.limit", f"{cfg.limit} is not a positive count; use null for the whole set")
    data = loader(**kwargs)
    _, h, w = data.image_shape
    if h != w:  # the backbones and the view recipes take square images
        fix = "set dataset.image_size=S (crop or pad them to S×S)" if "image_size" in cfg else "crop or pad them to squares"
        raise ConfigError("dataset", f"{data.name} images are {h}×{w} pixels, not square; {fix}")
    return stratified_subset(data, cfg.limit, seed)


__all__ = ["ImageDataset", "build_dataset", "stratified_subset"]
