"""``clusterbench-predict RUN_DIR [dataset overrides]``: assign new images to a finished run's
clusters, without training.

    clusterbench-predict outputs/2026-11-30/10-00-00_moco_folder dataset=folder dataset.root=new_photos
    clusterbench-predict RUN_DIR                          # the run's own images again
    clusterbench-predict RUN_DIR dataset.split=test --out preds/ --device cuda

The run's ``model.pt`` rebuilds the network and its preprocessing (input shape, per-channel
mean and std), ``clusters.npz`` assigns the embedded images (nearest centroid, the GMM's most
probable component, SwAV's prototype, MiCE's posterior), exactly as the run assigned its own
images: predicting a run's own images reproduces its assignments. The output folder gets
``assignments.csv``, and ``metrics.json`` (NMI / ACC / ARI) when the images have labels.
A folder dataset is decoded at the run's image size and channel count unless told otherwise.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from clusterbench.errors import ConfigError

log = logging.getLogger(__name__)
USER_ERROR = 2
# Overrides clusterbench-predict accepts: the images to assign, never the model or the clustering.
ALLOWED_PREFIXES = ("dataset=", "dataset.")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="clusterbench-predict",
        description="Assign new images to the clusters of a finished clusterbench run (no training).",
        epilog="Overrides choose the images, as for clusterbench: dataset=folder dataset.root=PATH, "
        "dataset=array dataset.path=FILE, dataset.split=test ... Without any, the run's own images.",
    )
    parser.add_argument("run_dir", type=Path, help="the run folder (holds model.pt and clusters.npz)")
    parser.add_argument("overrides", nargs="*", help="dataset overrides (key=value)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: RUN_DIR/predictions/<dataset>-<time>)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to embed (default: CUDA when visible)")
    parser.add_argument("--batch-size", type=int, default=None, help="images per forward (default: the run's trainer.embed_batch_size)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(list(argv))


def dataset_config(run_cfg: DictConfig, overrides: Sequence[str], input_shape: Sequence[int]) -> DictConfig:
    """The dataset to predict: the run's own, or the one the overrides compose (through Hydra,
    with the same schemas and errors as ``clusterbench``)."""
    bad = [o for o in overrides if not o.startswith(ALLOWED_PREFIXES)]
    if bad:
        raise ConfigError(bad[0].split("=", 1)[0], "clusterbench-predict takes dataset overrides only (the model and "
                          "clustering come from the run folder); use dataset=..., dataset.root=..., dataset.split=...")
    if not overrides:
        return run_cfg.dataset
    from hydra import compose, initialize_config_module

    from clusterbench.config import register_schemas

    register_schemas()
    choice = [o for o in overrides if o.startswith("dataset=")]
    if choice:
        chosen = choice[-1].split("=", 1)[1]
    else:
        chosen = str(run_cfg.dataset.name)
        overrides = [f"dataset={chosen}", *overrides]
    with initialize_config_module(config_module="clusterbench.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    dataset = cfg.dataset
    # A user's images are decoded to what the network takes, unless the overrides say otherwise.
    given = {o.split("=", 1)[0] for o in overrides}
    channels, size = int(input_shape[0]), int(input_shape[1])
    with open_dict(dataset):
        if "image_size" in dataset and "dataset.image_size" not in given:
            dataset.image_size = size
        if "channels" in dataset and "dataset.channels" not in given:
            dataset.channels = str(channels) if isinstance(dataset.channels, str) else channels
    log.info("predicting %s (overrides: %s)", chosen, " ".join(overrides))
    return dataset


def predict(run_dir: Path, overrides: Sequence[str] = (), out: Optional[Path] = None, device: str = "auto",
            batch_size: Optional[int] = None, progress: bool = True) -> dict[str, Any]:
    """Assign the images the overrides describe to ``run_dir``'s clusters; write the results in
    ``out`` and return a summary (the metrics when there are labels)."""
    from clusterbench import runfolder
    from clusterbench.data import build_dataset
    from clusterbench.io import atomic_write_json
    from clusterbench.metrics import evaluate

    start = time.perf_counter()
    run_dir = Path(run_dir)
    state = runfolder.read_model(run_dir)
    clusters = runfolder.read_clusters(run_dir)
    run_cfg = OmegaConf.create(state["config"])
    c, h, w = state["input_shape"]

    dataset_cfg = dataset_config(run_cfg, overrides, (c, h, w))
    data = build_dataset(dataset_cfg, int(run_cfg.seed))
    if data.image_shape != (c, h, w):
        raise ConfigError("dataset", f"the images are {'×'.join(map(str, data.image_shape))} (C×H×W) but the run's model takes "
                          f"{c}×{h}×{w}; set dataset.image_size={h} and dataset.channels={c}, or give images of that shape")
    dev = resolve(device)
    t0 = time.perf_counter()
    features, ids, confidence = assign_images(state, run_cfg, clusters, data.images, dev, batch_size, progress)
    embed_s = time.perf_counter() - t0

    out = out or run_dir / "predictions" / f"{data.name}-{datetime.now().strftime('%Y-%m-%d_%H-%M-%S')}"
    out.mkdir(parents=True, exist_ok=True)
    runfolder.write_assignments_csv(out / runfolder.ASSIGNMENTS, ids, names=data.names, confidence=confidence,
                                    labels=data.label_array(), class_names=data.class_names)
    summary: dict[str, Any] = {
        "run_dir": str(run_dir.resolve()),
        "method": state["method"],
        "dataset": data.name,
        "split": data.split,
        "n_samples": len(data),
        "n_clusters": int(clusters["num_clusters"]),
        "n_clusters_used": int(len(np.unique(ids))),
        "device": str(dev),
        "images_per_s": len(data) / max(embed_s, 1e-9),
        "wall_seconds": time.perf_counter() - start,
    }
    if data.has_labels:
        summary = {**evaluate(data.label_array(), ids), "labels": True, **summary}
        atomic_write_json(out / "metrics.json", summary)
    summary["out_dir"] = str(out)
    return summary


def resolve(device: str) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device", "cuda was asked for but torch sees no CUDA device; use --device cpu")
    return torch.device(device)


def embed_images(
    state: dict[str, Any],
    run_cfg: DictConfig,
    images: torch.Tensor,
    device: torch.device,
    batch_size: Optional[int] = None,
    progress: bool = True,
) -> tuple[Any, torch.Tensor]:
    """Rebuild the run's network from ``model.pt`` and embed ``images`` (uint8 N×C×H×W) as the
    run embedded its own (same batch size, memory layout, evaluation mode): the method, ready
    to ``assign``, and the features."""
    from clusterbench import distributed as D
    from clusterbench.engine import embed_dataset
    from clusterbench.methods.base import RunContext
    from clusterbench.methods.classical import extract_features
    from clusterbench.methods.deep import DeepMethod, InputShape, eval_mode
    from clusterbench.run import build

    c, h, _ = state["input_shape"]
    method = build(run_cfg.method)
    backbone = build(run_cfg.backbone, in_channels=c, image_size=h)
    if not isinstance(method, DeepMethod):
        backbone.load_state_dict(state["state_dict"])
        return method, extract_features(images, RunContext(device=device, seed=int(run_cfg.seed), backbone=backbone, progress=progress))
    method.configure_clusters(int(state["num_clusters"]))
    method.seed = int(run_cfg.seed)
    # the run's channel statistics: methods that work in pixel units (SCAE's canvas) undo the standardisation
    mean, std = (None if state.get(k) is None else tuple(float(v) for v in torch.as_tensor(state[k]).flatten()) for k in ("mean", "std"))
    model = method.setup(backbone, InputShape(c, h, mean, std))
    model.load_state_dict(state["state_dict"])
    method.model = model
    model.to(device)
    channels_last = bool(run_cfg.trainer.channels_last)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    with eval_mode(model):
        features = embed_dataset(method.embed, images, state["mean"], state["std"], batch_size or int(run_cfg.trainer.embed_batch_size),
                                 D.DistInfo(), channels_last, progress=progress, device=device)
    return method, features


def assign_images(
    state: dict[str, Any],
    run_cfg: DictConfig,
    clusters: dict[str, np.ndarray],
    images: torch.Tensor,
    device: torch.device,
    batch_size: Optional[int] = None,
    progress: bool = True,
) -> tuple[torch.Tensor, np.ndarray, Optional[np.ndarray]]:
    """Embed ``images`` with the run's network and assign them with its clustering:
    features, ids and confidences."""
    from clusterbench.cluster.state import assign as assign_clusters
    from clusterbench.methods.deep import DeepMethod, eval_mode

    method, features = embed_images(state, run_cfg, images, device, batch_size, progress)
    if not isinstance(method, DeepMethod):
        ids, confidence = assign_clusters(clusters, features)
        return features, ids, confidence
    with eval_mode(method.model):
        ids, confidence = method.assign(features, clusters)
    return features, ids, confidence


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Entry point of ``clusterbench-predict``: one-line errors, exit status 2."""
    import os

    from clusterbench.cli import describe

    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # composition errors as exceptions, described below
    try:
        summary = predict(args.run_dir, args.overrides, args.out, args.device, args.batch_size, progress=not args.no_progress)
    except Exception as ex:  # noqa: BLE001 — describe() keeps bugs' tracebacks
        message = describe(ex)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(USER_ERROR)
    scores = "  ".join(f"{k.upper()} {summary[k]:.2%}" for k in ("nmi", "acc", "ari") if k in summary)
    print(f"{summary['n_samples']:,} images → {summary['n_clusters_used']} of {summary['n_clusters']} clusters"
          f"{'  ' + scores if scores else ''}   ({summary['images_per_s']:.0f} img/s on {summary['device']})   → {summary['out_dir']}")


if __name__ == "__main__":
    main()
