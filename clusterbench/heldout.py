"""``eval.split``: train on one split, evaluate on another (SCAN's and SPICE's protocol: fit on
the train split, report on the test split).

The evaluated images are never fitted on: after training, they are embedded by the trained
network in eval mode with the training set's preprocessing, and assigned by the fitted
clustering (nearest centroid, the GMM's responsibilities, the method's own head: the run's
``clusters`` state), exactly as ``clusterbench-predict`` assigns new images. The run's scores,
exports and plots are then those of the evaluated split; the fitted split's scores are kept
beside them (``fit_scores``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from clusterbench.data.dataset import SPLITS, ImageDataset
from clusterbench.errors import ConfigError
from clusterbench.methods.base import Prediction, RunContext


def eval_split_of(cfg: DictConfig) -> str | None:
    """The split scored when it differs from the fitted one, else None; checked before loading."""
    split = cfg.eval.get("split")
    if split is None:
        return None
    split = str(getattr(split, "value", split))
    if split not in SPLITS:
        raise ConfigError("eval.split", f"'{split}' is not a split; use {', '.join(SPLITS)} (or null: the fitted split)")
    fitted = str(getattr(cfg.dataset.split, "value", cfg.dataset.split))
    if split == fitted:
        return None
    if fitted == "all" or split == "all":
        raise ConfigError("eval.split", f"split={fitted} and eval.split={split} overlap: the evaluated images would be fitted on; "
                          "train on dataset.split=train and evaluate on eval.split=test")
    return split


def load_eval_split(cfg: DictConfig, split: str, seed: int, fitted: ImageDataset) -> ImageDataset:
    """The evaluated split, as the run's dataset config loads it with ``split`` instead."""
    from clusterbench.data import build_dataset

    data = build_dataset(OmegaConf.merge(cfg.dataset, {"split": split}), seed)
    if data.image_shape != fitted.image_shape:
        raise ConfigError("eval.split", f"the {split} images are {data.image_shape}, the fitted ones {fitted.image_shape}")
    return data


@torch.no_grad()
def assign_heldout(method: Any, ctx: RunContext, prediction: Prediction, data: ImageDataset) -> Prediction:
    """``data`` embedded by the trained ``method`` and assigned by its fitted clustering."""
    from clusterbench.engine import embed_dataset
    from clusterbench.methods.classical import extract_features
    from clusterbench.methods.deep import DeepMethod, eval_mode

    if prediction.clusters is None:
        raise ConfigError("eval.split", f"{method.name} keeps no clustering state to assign new images with")
    if isinstance(method, DeepMethod):
        mean, std = prediction.preprocess["mean"], prediction.preprocess["std"]
        with eval_mode(method.model):
            features = embed_dataset(method.embed, data.images, mean, std, int(ctx.trainer.embed_batch_size), ctx.dist,
                                     bool(ctx.trainer.channels_last), device=ctx.device)
            ids, confidence = method.assign(features, prediction.clusters)
    else:
        from clusterbench.cluster.state import assign as assign_clusters

        features = extract_features(data.images, ctx)
        ids, confidence = assign_clusters(prediction.clusters, features)
    return dataclasses.replace(prediction, assignments=np.asarray(ids), confidence=None if confidence is None else np.asarray(confidence),
                               embeddings=features.float().cpu().numpy())
