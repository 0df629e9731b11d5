"""One experiment from a composed config: load → fit → evaluate → write results.

metrics.json is written last, atomically: its presence marks a finished run.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from clusterbench import distributed as D
from clusterbench import runfolder
from clusterbench.data import build_dataset
from clusterbench.data.dataset import ImageDataset
from clusterbench.errors import ClusterbenchError, ConfigError
from clusterbench.io import atomic_save_npy, atomic_write_json
from clusterbench.methods.base import Method, Prediction, RunContext
from clusterbench.methods.deep import DeepMethod
from clusterbench.metrics import evaluate, internal_scores
from clusterbench.health import best_beats_final
from clusterbench.heldout import assign_heldout, eval_split_of, load_eval_split
from clusterbench.engine import check_trainer
from clusterbench.plan import describe_plan, format_plan
from clusterbench.probes.protocol import PROBE_SCORES, check_probe_settings, heldout_protocol, probe_protocol
from clusterbench.trackers import Tracker, build_tracker
from clusterbench.recipes import Recipe, recipe_stage, resolve_recipe
from clusterbench.stages import Stage
from clusterbench.provenance import config_hash, git_commit, library_versions
from clusterbench.report import store
from clusterbench.report.runs import protocol_of, variant_of
from clusterbench.summary import format_table, format_timings

log = logging.getLogger(__name__)


def resolve_device(hardware: DictConfig) -> torch.device:
    """``auto`` picks CUDA when a GPU is visible; asking for ``cuda`` without one is an error."""
    want = str(getattr(hardware.device, "value", hardware.device))
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want == "cuda" and not torch.cuda.is_available():
        raise ConfigError("hardware", "a GPU was requested but torch sees no CUDA device; use hardware=cpu or hardware=auto")
    if hardware.threads is not None:
        if hardware.threads < 1:
            raise ConfigError("hardware.threads", f"{hardware.threads} is not a thread count; use ≥ 1 or null")
        torch.set_num_threads(hardware.threads)
    return torch.device(want)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build(node: DictConfig, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate``, unwrapping our own errors from Hydra's wrapper."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as ex:
        if isinstance(ex.__cause__, ClusterbenchError):
            raise ex.__cause__ from None
        raise


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def night_of(cfg: DictConfig) -> str:
    return cfg.night or datetime.now(timezone.utc).date().isoformat()


def hash_of(cfg: DictConfig) -> str:
    """The config hash of ``cfg`` resolved; unresolved when resolving is what failed."""
    try:
        return config_hash(OmegaConf.to_container(cfg, resolve=True))
    except Exception:  # noqa: BLE001 — the failure being recorded may be a bad interpolation
        return config_hash(OmegaConf.to_container(cfg, resolve=False))


def finished_result(out_dir: Path, cfg: DictConfig) -> Optional[dict[str, Any]]:
    """The result already in ``out_dir`` when it is of this very config, else None."""
    try:
        previous = json.loads((out_dir / "metrics.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    same = previous.get("config_hash") == hash_of(cfg)
    return previous if same else None


def run_experiment(cfg: DictConfig, out_dir: Path, overrides: Sequence[str] = (), progress: bool = True) -> dict[str, Any]:
    """Run the experiment ``cfg`` describes and write its results into ``out_dir``."""
    start, started_at = time.perf_counter(), utc_now()
    if cfg.seed < 0:
        raise ConfigError("seed", f"{cfg.seed} is negative; use an integer ≥ 0")
    method: Method = build(cfg.method)
    threads = torch.get_num_threads()  # hardware.threads is this run's: restored after it (in-process sweeps, tests)
    device = resolve_device(cfg.hardware)
    dist = D.init(cfg.hardware.distributed, device, cfg.hardware.backend, cfg.hardware.timeout_minutes)
    try:
        if dist.enabled:
            if device.type == "cuda":
                device = torch.device("cuda", dist.local_rank)
                torch.cuda.set_device(device)
            out_dir = Path(D.broadcast_object(str(out_dir)))  # rank 0's folder: checkpoints are read from it
        tracker = build_tracker(cfg.get("logger")) if dist.is_main else Tracker()  # only rank 0 logs; a missing package fails now
        try:
            result = _run(cfg, method, device, dist, out_dir, overrides, progress, start, started_at, tracker)
        except BaseException as ex:
            tracker.close(failed=True)
            if dist.enabled and not isinstance(ex, ClusterbenchError) and D.lost_peers(ex):
                first = next((line.strip() for line in str(ex).splitlines() if line.strip()), type(ex).__name__).split(". ")[0]
                raise ClusterbenchError(f"rank {dist.rank}: lost contact with the other ranks ({first[:160]}); "
                                        "another rank failed or was killed: its own error is in its output") from None
            raise
        tracker.close()
        # ranks leave together: a rank that tore the group down while rank 0 was still writing
        # its results made gloo abort now and then (std::terminate in CI)
        D.barrier()
        return result
    finally:
        D.shutdown()
        torch.set_num_threads(threads)


def _run(cfg: DictConfig, method: Method, device: torch.device, dist: D.DistInfo, out_dir: Path, overrides: Sequence[str], progress: bool, start: float,
         started_at: str, tracker: Optional[Tracker] = None) -> dict[str, Any]:
    seed_everything(cfg.seed)  # the same on every rank: identical initial weights
    check_probe_settings(cfg.eval)  # before any data is read

    eval_split = eval_split_of(cfg)  # before any data is read
    if str(cfg.plots.embedding_map) not in ("auto", "tsne", "umap", "pca"):  # clusterbench.report.plots.EMBEDDING_MAPS
        raise ConfigError("plots.embedding_map", f"'{cfg.plots.embedding_map}' is not a map; use auto, tsne, umap or pca")
    if isinstance(method, DeepMethod):
        check_trainer(cfg.trainer, dist, device)  # before any data is read: a wrong value costs no loading

    tracker = tracker or Tracker()
    if dist.is_main:
        tracker.start(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True), out_dir, out_dir.name)

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    data = build_dataset(cfg.dataset, cfg.seed)
    heldout = None if eval_split is None else load_eval_split(cfg, eval_split, cfg.seed, data)  # never fitted on
    timings["load"] = time.perf_counter() - t0
    log.info("%s (%s): %d images %s, %s", data.name, data.split, len(data), data.image_shape,
             f"{data.num_classes} classes" if data.has_labels else "no labels")

    channels, size, _ = data.image_shape
    recipe = resolve_recipe(cfg, data.image_shape, overrides, deep=isinstance(method, DeepMethod))
    experiment = next((o.split("=", 1)[1] for o in overrides if o.startswith(("experiment=", "+experiment="))), None)
    plan = describe_plan(cfg, method_name(cfg), str(cfg.dataset.name), recipe.augment, recipe.backbone, size, str(device),
                         deep=isinstance(method, DeepMethod), experiment=experiment, augmented=getattr(method, "augmented", True))
    if dist.is_main:
        log.info("%s", format_plan(plan))
    stage = build_stage(cfg, method, data)
    ctx = RunContext(
        device=device,
        seed=cfg.seed,
        backbone=build(recipe.backbone, in_channels=channels, image_size=size),
        out_dir=out_dir,
        progress=progress,
        trainer=cfg.trainer,
        augment=recipe.augment,
        resume=cfg.resume,
        sync_bn=cfg.hardware.sync_bn,
        grad_sync=str(getattr(cfg.hardware.grad_sync, "value", cfg.hardware.grad_sync)),
        placement=str(getattr(cfg.data.placement, "value", cfg.data.placement)),
        dist=dist,
        cluster=stage,
        probes=probe_protocol(data, cfg.eval, cfg.seed) if isinstance(method, DeepMethod) else None,
        tracker=tracker,
    )
    if (cfg.eval.knn or cfg.eval.linear) and ctx.probes is None:
        log.warning("eval.knn / eval.linear: %s", "the dataset has no labels to probe with" if not data.has_labels
                    else f"{method_name(cfg)} has no trained features to probe (the probes follow the deep methods)")
    prediction = method.fit_predict(data, ctx)
    if not dist.is_main:
        return {}  # rank 0 alone evaluates and writes
    timings.update(prediction.timings)
    for key in [key for key in prediction.info if key.startswith("estimate")]:  # measured over the first steps (clusterbench.eta)
        plan[key] = prediction.info.pop(key)
    if prediction.assignments.shape != (len(data),):
        raise RuntimeError(f"{method.name} returned {prediction.assignments.shape} ids for {len(data)} images")
    fit_scores, fitted_split = None, data.split
    if heldout is not None:  # eval.split: from here on the run is about the evaluated images
        t0 = time.perf_counter()
        fit_scores = evaluate(data.label_array(), prediction.assignments) if data.has_labels else None
        fitted = prediction
        prediction = assign_heldout(method, ctx, prediction, heldout)
        if ctx.probes is not None and heldout.has_labels and fitted.embeddings is not None:  # train → evaluated split
            ctx.probes = heldout_protocol(ctx.probes, data.labels, heldout.labels, f"{data.split} → {heldout.split} (eval.split)")
            prediction.info.update(ctx.probes.scores(torch.cat([torch.from_numpy(fitted.embeddings), torch.from_numpy(prediction.embeddings)])))
        data = heldout
        timings["heldout"] = time.perf_counter() - t0
        log.info("eval.split=%s: %d images embedded and assigned by the model fitted on split=%s", data.split, len(data), fitted_split)

    t0 = time.perf_counter()
    if data.has_labels:
        scores: dict[str, Any] = {"labels": True, **evaluate(data.label_array(), prediction.assignments), "acc_kind": "hungarian one-to-one"}
    else:  # no NMI / ACC / ARI without labels: internal indices of the final features instead
        features = prediction.embeddings if prediction.embeddings is not None else data.images.reshape(len(data), -1).numpy()
        scores = {"labels": False, **internal_scores(features, prediction.assignments, seed=cfg.seed, num_clusters=prediction.num_clusters)}
    timings["evaluate"] = time.perf_counter() - t0

    health = list(prediction.info.pop("health", []))  # the training's warnings, and the run's own check:
    drop = best_beats_final(prediction.history, scores.get("acc")) if heldout is None else None  # (a held-out split is scored once)
    health += [drop] if drop else []

    config = OmegaConf.to_container(cfg, resolve=True)
    result: dict[str, Any] = {
        **scores,
        **{key: prediction.info[key] for key in PROBE_SCORES[:2] if key in prediction.info},  # knn_acc, linear_acc: beside acc
        "n_samples": len(data),
        "n_clusters": prediction.num_clusters,
        "n_clusters_used": int(len(np.unique(prediction.assignments))),
        "n_classes": data.num_classes if data.has_labels else None,
        "n_train_only": 0 if data.unlabeled is None else len(data.unlabeled),
        "method": method_name(cfg),
        "dataset": data.name,
        "split": data.split,
        **({"fit_split": fitted_split, "fit_scores": {key: float(fit_scores[key]) for key in ("nmi", "acc", "ari")} if fit_scores else None}
           if heldout is not None else {}),
        "seed": int(cfg.seed),
        "protocol": protocol_of(data.split if heldout is None else f"{fitted_split}→{data.split}", overrides),
        # a recipe's stage is named in the row label as cluster=... would be: stages never average together
        "variant": variant_of([*overrides, *([f"cluster={stage.name}"] if getattr(stage, "from_recipe", False) else [])]),
        "overrides": list(overrides),
        "device": str(device),
        "status": "completed",
        "method_info": prediction.info,
        "health": health,  # training-health warnings (clusterbench.health): [] when none fired
        "cluster": None if stage is None else {"name": stage.name, **stage.settings(),  # the clustering stage: part of the protocol
                                               **({"from_recipe": True} if getattr(stage, "from_recipe", False) else {})},
        "plan": plan,  # what the run said it would do, before training (clusterbench.plan)
        "recipe": recipe.chosen or None,  # what the recipe or clusterbench.recipes chose (augment, backbone), and why
        "probes": None if ctx.probes is None else {**ctx.probes.describe(), **{key: prediction.info[key] for key in PROBE_SCORES if key in prediction.info}},
        "timings": timings,
        "run_id": uuid.uuid4().hex,
        "night": night_of(cfg),
        "started_at": started_at,
        "versions": library_versions(),
        "git": git_commit(),
        "config_hash": config_hash(config),
        "config": config,
    }
    if cfg.save_assignments:
        atomic_save_npy(out_dir / "assignments.npy", prediction.assignments.astype(np.int64))
    t0 = time.perf_counter()
    write_exports(cfg, recipe, method, ctx.backbone, data, prediction, out_dir)
    timings["export"] = time.perf_counter() - t0
    drawn: list[Path] = []
    if cfg.plots.enabled:
        t0 = time.perf_counter()
        how: dict[str, str] = {}
        drawn = write_plots(cfg.plots, data, prediction, out_dir, cfg.seed, run_seconds=t0 - start, drawn_how=how)
        timings["plots"] = time.perf_counter() - t0
        result["plots"] = how
    tracker.log_final(result)
    tracker.log_images(drawn)
    result["wall_seconds"] = time.perf_counter() - start
    result["finished_at"] = utc_now()
    atomic_write_json(out_dir / "metrics.json", result)
    (out_dir / "error.json").unlink(missing_ok=True)  # an earlier attempt's failure is now stale
    if cfg.store:
        store.append(cfg.store, store.from_result(result, out_dir))
    print(format_table([result]))
    print(format_timings(timings) + f"   → {out_dir}")
    return result


def build_stage(cfg: DictConfig, method: Method, data: ImageDataset) -> Optional[Stage]:
    """The clustering stage ``cluster=...`` asks for (else the method × dataset recipe's,
    ``recipe_cluster``), checked against the method before training."""
    chosen = cfg.get("cluster")
    if chosen is None and cfg.get("recipe_cluster") is not None:
        chosen = recipe_stage(cfg.recipe_cluster)
        log.info("cluster=%s: the %s × %s recipe's stage (cluster=... picks another; cluster=kmeans is the papers' read-out)",
                 chosen.name, method_name(cfg), cfg.dataset.name)
    if chosen is None:
        return None
    if not isinstance(method, DeepMethod):
        raise ConfigError("cluster", f"cluster={chosen.name} follows a trained method; {method_name(cfg)} is a clustering "
                          "itself (its options set its own fit): drop cluster=, or pick a deep method")
    node = OmegaConf.to_container(chosen, resolve=True)
    node.pop("name")  # the option's label, not a constructor argument
    minutes = node.pop("minutes", None)
    stage: Stage = build(OmegaConf.create(node))
    stage.from_recipe = cfg.get("cluster") is None  # recorded, and named in the report's row label
    if minutes is not None:
        budget = cfg.trainer.max_minutes
        if minutes <= 0 or budget is None or minutes >= budget:
            raise ConfigError("cluster.minutes", f"{minutes} minutes kept for the stage out of trainer.max_minutes={budget}; "
                              "use a positive share smaller than the budget (or null)")
        stage.minutes = float(minutes)
    stage.check(method, method.clusters_for(data))
    stage.check_budget(cfg.trainer)
    return stage


def write_exports(cfg: DictConfig, recipe: Recipe, method: Method, backbone: torch.nn.Module, data: ImageDataset, prediction: Prediction, out_dir: Path) -> None:
    """features.npy, clusters.npz, model.pt and assignments.csv (clusterbench.runfolder).

    A classical method's "model" is its feature extractor (``backbone``; raw pixels: no weights)."""
    export = cfg.export
    deep = isinstance(method, DeepMethod)
    if export.features and deep and prediction.embeddings is not None:
        runfolder.write_features(out_dir, prediction.embeddings, str(getattr(export.features_dtype, "value", export.features_dtype)))
    if export.clusters and prediction.clusters is not None:
        runfolder.write_clusters(out_dir, prediction.clusters)
    if export.model and prediction.clusters is not None:
        runfolder.write_model(
            out_dir,
            model=method.model if deep else backbone,
            config={**OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),  # with what this run resolved:
                    "backbone": OmegaConf.to_container(recipe.backbone, resolve=True, enum_to_str=True),
                    "augment": OmegaConf.to_container(recipe.augment, resolve=True, enum_to_str=True)},
            method=method_name(cfg),
            input_shape=data.image_shape,
            num_clusters=prediction.num_clusters,
            mean=prediction.preprocess.get("mean"),
            std=prediction.preprocess.get("std"),
        )
    if export.assignments_csv:
        runfolder.write_assignments_csv(out_dir / runfolder.ASSIGNMENTS, prediction.assignments, names=data.names,
                                        confidence=prediction.confidence, labels=data.label_array(), class_names=data.class_names)


def record_failure(cfg: DictConfig, out_dir: Path, overrides: Sequence[str], message: str) -> None:
    """error.json (and a store row) for a run that stopped: the report lists it, never drops it."""
    try:
        choices = HydraConfig.get().runtime.choices
        method, dataset = str(choices["method"]), str(choices["dataset"])
    except (ValueError, KeyError):
        method, dataset = method_name(cfg), str(cfg.dataset.name)
    split = str(getattr(cfg.dataset.split, "value", cfg.dataset.split))
    failure = {
        "status": "failed",
        "error": message,
        "method": method,
        "dataset": dataset,
        "split": split,
        "seed": int(cfg.seed),
        "protocol": protocol_of(split, overrides),
        "variant": variant_of(overrides),
        "overrides": list(overrides),
        "run_id": uuid.uuid4().hex,
        "night": night_of(cfg),
        "finished_at": utc_now(),
        "config_hash": hash_of(cfg),
    }
    atomic_write_json(out_dir / "error.json", failure)
    if cfg.store:
        store.append(cfg.store, store.from_result(failure, out_dir))


def write_plots(plots: DictConfig, data: Any, prediction: Prediction, out_dir: Path, seed: int, run_seconds: float = 0.0,
                drawn_how: Optional[dict[str, str]] = None) -> list[Path]:
    """Per-run PNGs (the paths drawn). A plot that fails is logged and skipped: it must not cost the result.
    ``run_seconds`` (the run's wall time so far) lets ``plots.embedding_map=auto`` keep the map cheap
    on quick runs; which map was drawn, and why, goes into ``drawn_how`` and the log."""
    from clusterbench.report import plots as P  # noqa

    labels = data.label_array()
    jobs = []
    if plots.clusters:
        jobs.append(("clusters.png", lambda p: P.plot_cluster_montage(data.images, prediction.assignments, p, features=prediction.embeddings, seed=seed)))
    if plots.confusion and labels is not None:
        jobs.append(("confusion.png", lambda p: P.plot_confusion(labels, prediction.assignments, p, class_names=data.class_names)))
    if plots.embedding and prediction.embeddings is not None:
        emb = np.asarray(prediction.embeddings)
        how, why = P.choose_embedding_map(str(plots.embedding_map), min(len(emb), int(plots.embedding_points)), run_seconds)
        log.info("embedding map: %s", why)
        if drawn_how is not None:
            drawn_how["embedding_map"] = why
        jobs.append(("embedding.png", lambda p: P.plot_embedding(emb, prediction.assignments, labels, p, max_points=plots.embedding_points, seed=seed,
                                                                 method=how)))
    if prediction.samples is not None:  # what a generative method makes (InfoGAN: a row per categorical code)
        grid, row_label, title = prediction.samples
        jobs.append(("samples.png", lambda p: P.plot_image_grid(grid, p, row_label=row_label, title=title)))
    history = out_dir / "metrics.jsonl"
    if plots.curves and history.exists():
        records = [json.loads(line) for line in history.read_text().splitlines() if line.strip()]
        jobs.append(("curves.png", lambda p: P.plot_training_curves(records, p)))
    drawn = []
    for name, draw in jobs:
        try:
            draw(out_dir / name)
            drawn.append(out_dir / name)
        except Exception as ex:  # noqa: BLE001 — a plot is never worth a lost result
            log.warning("could not draw %s: %s", name, ex)
    return drawn


def method_name(cfg: DictConfig) -> str:
    """The method's config-group choice (kmeans, gmm, ...), falling back to its class name."""
    try:
        return str(HydraConfig.get().runtime.choices["method"])
    except (ValueError, KeyError):
        return str(cfg.method._target_).rsplit(".", 1)[-1]
