"""``clusterbench-recluster RUN_DIR cluster=STAGE [cluster.key=value ...]``: run another
clustering stage on a finished run's trained model, without training it again.

    clusterbench-recluster outputs/2026-11-30/10-00-00_moco_mnist cluster=umap
    clusterbench-recluster RUN_DIR cluster=gmm cluster.pca_dim=32 --out stage_tries/gmm32

The run's images are embedded from its ``model.pt`` exactly as the run embedded them, then the
stage clusters those features with the run's seed: the same stage gives the same result as it
would have inside the run. The stage's result goes into its own folder (default
``RUN_DIR/stages/<stage>-<time>/``): ``metrics.json`` (the run's record, with the stage's scores,
its settings under ``cluster`` and ``cluster=...`` among the overrides, so the report shows it as
its own row), ``clusters.npz`` and ``assignments.csv`` — a folder ``clusterbench-predict`` takes.

``cluster=scan`` trains on (SCAN's heads and self-labelling fine-tune the network): it starts
from the run's model.pt, with the run's trainer, augmentation and seed, so on a run read out by
k-means it gives what ``cluster=scan`` in the run would have. Its folder gets the fine-tuned
network as its own model.pt, its checkpoints and its metrics.jsonl lines.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from omegaconf import OmegaConf

from clusterbench.errors import ConfigError

USER_ERROR = 2


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="clusterbench-recluster",
        description="Run a clustering stage (cluster=kmeans|gmm|umap|own|scan) on a finished run's trained model, without training.",
    )
    parser.add_argument("run_dir", type=Path, help="the run folder (holds model.pt and metrics.json)")
    parser.add_argument("overrides", nargs="+", help="cluster=STAGE, then cluster.key=value settings")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: RUN_DIR/stages/<stage>-<time>)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(list(argv))


def stage_config(overrides: Sequence[str]) -> Any:
    """The ``cluster`` node the overrides compose (Hydra, with the schemas and their errors)."""
    bad = [o for o in overrides if not o.startswith(("cluster=", "cluster."))]
    if bad or not any(o.startswith("cluster=") for o in overrides):
        raise ConfigError("cluster", "clusterbench-recluster takes cluster=STAGE (kmeans, gmm, umap, own, scan) and cluster.* settings only")
    from hydra import compose, initialize_config_module

    from clusterbench.config import register_schemas

    register_schemas()
    with initialize_config_module(config_module="clusterbench.conf", version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides)).cluster


def recluster(run_dir: Path, overrides: Sequence[str], out: Optional[Path] = None, device: str = "auto", progress: bool = True) -> dict[str, Any]:
    """Fit the stage ``overrides`` describe on ``run_dir``'s features; write and return its result."""
    from clusterbench import runfolder
    from clusterbench.data import build_dataset
    from clusterbench.run import build, build_stage

    start = time.perf_counter()
    run_dir = Path(run_dir)
    state = runfolder.read_model(run_dir)
    try:
        record = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, json.JSONDecodeError):
        raise runfolder.RunFolderError(f"{run_dir / 'metrics.json'} is missing or unreadable: the run did not finish; run it again") from None
    run_cfg = OmegaConf.create(state["config"])
    cfg = OmegaConf.create(state["config"])
    cfg.cluster = OmegaConf.create(OmegaConf.to_container(stage_config(overrides), resolve=True))  # replaces the run's stage, never merges into it
    data = build_dataset(run_cfg.dataset, int(run_cfg.seed))
    stage = build_stage(cfg, build(run_cfg.method), data)  # checked against the method before anything is embedded
    assert stage is not None

    threads = torch.get_num_threads()
    if run_cfg.get("hardware", {}).get("threads") is not None:  # as the run: a convolution's sums, and so the
        torch.set_num_threads(int(run_cfg.hardware.threads))      # features a stage sees, depend on the thread count
    try:
        return _recluster(run_dir, overrides, out, device, progress, start, state, record, run_cfg, cfg, data, stage)
    finally:
        torch.set_num_threads(threads)


def _recluster(run_dir: Path, overrides: Sequence[str], out: Optional[Path], device: str, progress: bool, start: float, state: dict[str, Any],
               record: dict[str, Any], run_cfg: Any, cfg: Any, data: Any, stage: Any) -> dict[str, Any]:
    from clusterbench import runfolder
    from clusterbench.io import atomic_write_json
    from clusterbench.metrics import evaluate, internal_scores
    from clusterbench.predict import embed_images, resolve
    from clusterbench.report.runs import protocol_of, variant_of

    t0 = time.perf_counter()
    method, features = embed_images(state, run_cfg, data.train_images(), resolve(device), progress=progress)
    embed_s = time.perf_counter() - t0
    out = out or run_dir / "stages" / f"{stage.name}-{datetime.now().strftime('%Y-%m-%d_%H-%M-%S')}"
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    method_info: dict[str, Any] = {}
    if stage.trains:  # SCAN: trains on from the run's network, on the engine, as it would in-run
        prediction = train_stage(stage, method, features, state, run_cfg, data, out, resolve(device), progress)
        ids, confidence, clusters = prediction.assignments, prediction.confidence, prediction.clusters
        method_info = prediction.info
        runfolder.write_model(out, model=method.model, config={**state["config"], "cluster": OmegaConf.to_container(cfg.cluster, enum_to_str=True)},
                              method=state["method"], input_shape=state["input_shape"], num_clusters=int(state["num_clusters"]),
                              mean=state["mean"], std=state["std"])
        features = torch.from_numpy(prediction.embeddings) if prediction.embeddings is not None else features
    else:
        fit = stage.fit(features, int(state["num_clusters"]), int(run_cfg.seed), method)
        ids, confidence, clusters = fit.assignments[: len(data)], fit.confidence, fit.clusters
        shutil.copyfile(run_dir / runfolder.MODEL, out / runfolder.MODEL)  # the folder predicts on its own
    stage_s = time.perf_counter() - t0
    confidence = None if confidence is None else confidence[: len(data)]

    runfolder.write_clusters(out, clusters)
    runfolder.write_assignments_csv(out / runfolder.ASSIGNMENTS, ids, names=data.names, confidence=confidence,
                                    labels=data.label_array(), class_names=data.class_names)
    if data.has_labels:
        scores: dict[str, Any] = {"labels": True, **evaluate(data.label_array(), ids), "acc_kind": "hungarian one-to-one"}
    else:
        scores = {"labels": False, **internal_scores(features[: len(data)].cpu().numpy(), ids, seed=int(run_cfg.seed), num_clusters=int(state["num_clusters"]))}
    kept = {key: v for key, v in record.items() if key not in ("nmi", "acc", "ari", "purity", "labels", "acc_kind", "silhouette", "calinski_harabasz",
                                                              "davies_bouldin", "cluster_sizes", "effective_clusters", "internal_sample")}
    stage_overrides = [o for o in record.get("overrides", []) if not o.startswith(("cluster=", "cluster."))] + list(overrides)
    result = {
        **scores,
        **kept,
        **({"method_info": {**record.get("method_info", {}), **method_info}} if method_info else {}),
        "n_clusters_used": int(len(np.unique(ids))),
        "cluster": {"name": stage.name, **stage.settings()},
        "reclustered_from": str(run_dir.resolve()),
        "overrides": stage_overrides,
        "protocol": protocol_of(str(record.get("split", "all")), stage_overrides),
        "variant": variant_of(stage_overrides),
        "timings": {"embed": embed_s, "cluster_stage": stage_s},
        "wall_seconds": time.perf_counter() - start,
        "run_id": uuid.uuid4().hex,
        "status": "completed",
    }
    atomic_write_json(out / "metrics.json", result)
    result["out_dir"] = str(out)
    return result


def train_stage(stage: Any, method: Any, features: Any, state: dict[str, Any], run_cfg: Any, data: Any, out: Path, device: Any,
                progress: bool) -> Any:
    """A stage that trains (SCAN) on the run's trained ``method``, with the run's trainer,
    augmentation and seed, into ``out`` (its checkpoints and metrics.jsonl lines)."""
    from clusterbench.methods.base import Prediction, RunContext

    k = int(state["num_clusters"])
    ctx = RunContext(device=device, seed=int(run_cfg.seed), backbone=method.model, out_dir=out, progress=progress,
                     trainer=run_cfg.trainer, augment=run_cfg.augment, cluster=stage)
    pretext = Prediction(np.zeros(len(data), np.int64), k, {}, {}, embeddings=features.float().cpu().numpy(),
                         preprocess={"mean": state["mean"], "std": state["std"]})
    return stage.train(method, data, ctx, pretext)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Entry point of ``clusterbench-recluster``: one-line errors, exit status 2."""
    import logging
    import os

    from clusterbench.cli import describe
    from clusterbench.summary import format_table

    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    try:
        result = recluster(args.run_dir, args.overrides, args.out, args.device, progress=not args.no_progress)
    except Exception as ex:  # noqa: BLE001 — describe() keeps bugs' tracebacks
        message = describe(ex)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(USER_ERROR)
    print(format_table([result]))
    print(f"stage {result['cluster']['name']}: {result['timings']['cluster_stage']:.1f}s (embedding {result['timings']['embed']:.1f}s)   → {result['out_dir']}")


if __name__ == "__main__":
    main()
