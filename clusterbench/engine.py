"""The one training loop every deep method runs (``DeepMethod.fit_predict`` calls ``train``).

Read top to bottom, a run is:

1. The training images go to the device once, as uint8 (or, past its memory, stay on the host
   with each batch copied ahead: ``data.placement``); views are made on the device in batches.
2. The method builds its networks around the backbone; the optimiser is built over them.
3. With ``resume=true`` and a checkpoint in the run folder, everything is restored from it.
4. Each epoch: the method's epoch-start hook (its E-step), then steps of
   views → ``training_step`` → backward (DDP all-reduces the gradients meanwhile) → clip →
   optimiser, with the learning rate set from the schedule before each step (a method that
   owns its optimisers, a GAN, steps them itself inside ``training_step`` through
   ``optim.ManualSteps``: the same zeroing, loss scaling, averaging and clipping). The step never
   waits for the device: losses and a non-finite flag stay there and are read every
   ``sync_every`` steps and at the end of the epoch; a non-finite loss stops the run there,
   naming its first bad step, before any checkpoint could hold it.
5. Every ``eval_every`` epochs the dataset is embedded and clustered and NMI / ACC / ARI are
   logged; every ``checkpoint_every`` epochs a checkpoint is written atomically.
6. At the end (or when ``max_minutes`` runs out) the final embedding is clustered.

Rank 0 alone writes files and draws the progress bar; every rank runs the same steps on its
share of the batch.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from clusterbench import checkpoint as ckpt
from clusterbench import distributed as D
from clusterbench.data.augment import Augmenter, standardize
from clusterbench.eta import RunEstimate
from clusterbench.data.dataset import ImageDataset
from clusterbench.data.placement import ImageStore
from clusterbench.errors import ClusterbenchError, ConfigError
from clusterbench.health import HealthMonitor
from clusterbench.io import atomic_write_bytes
from clusterbench.methods.base import Prediction, RunContext, Timer
from clusterbench.methods.deep import Batch, DeepMethod, EpochContext, InputShape, eval_mode
from clusterbench.metrics import evaluate
from clusterbench.optim import ManualSteps, backward_and_step, build_optimizer, check_optimizer_values, learning_rate, set_learning_rate

log = logging.getLogger(__name__)
STATS_SAMPLE = 10_000  # images used to estimate the per-channel mean and std


class TrainingError(ClusterbenchError):
    """Training cannot go on (a non-finite loss); the last good checkpoint is kept."""


@dataclass
class Clock:
    """Training wall time, carried across resumes, and the optional budget."""

    budget_s: Optional[float]
    before_s: float = 0.0  # spent by earlier attempts of this run
    started: float = 0.0

    def start(self) -> None:
        self.started = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return self.before_s + time.perf_counter() - self.started

    @property
    def out_of_time(self) -> bool:
        return self.budget_s is not None and self.elapsed >= self.budget_s

    def fraction(self) -> float:
        return 0.0 if self.budget_s is None else self.elapsed / self.budget_s


def clock_text(seconds: float) -> str:
    """m:ss (h:mm:ss past an hour) of a non-negative time: the progress bar's budget left."""
    seconds = max(int(seconds), 0)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class FiniteWatch:
    """The NaN guard without a host sync per step: whether each loss was finite is kept on the
    device, with the global step and value of the first that was not, and read by ``check``
    every ``trainer.sync_every`` steps and at the end of each epoch. The steps between a bad
    loss and its check run on (their weights are never saved: ``check`` comes before any
    checkpoint, evaluation or export)."""

    def __init__(self, device: torch.device, step: int) -> None:
        self.device = device
        self.epoch_start = step  # global step of this epoch's first step
        self.step = torch.full((), step, dtype=torch.long, device=device)  # the global step, counted on the device
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)
        self.bad_value = torch.zeros((), device=device)

    def add(self, loss: torch.Tensor) -> None:
        """One step's loss (a 0-d tensor on the device); queues three tiny kernels, reads nothing."""
        new = torch.logical_and(self.first_bad < 0, torch.logical_not(torch.isfinite(loss)))
        self.bad_value = torch.where(new, loss.float(), self.bad_value)
        self.first_bad = torch.where(new, self.step, self.first_bad)
        self.step += 1

    def check(self, epoch: int, out_dir: Path) -> None:
        """Raise ``TrainingError`` on every rank when any rank saw a non-finite loss (ranks stop
        together, or they deadlock), naming this rank's first bad epoch and step."""
        bad_at = int(self.first_bad)  # a host read: waits for the queued steps
        if not D.any_true(bad_at >= 0, self.device):
            return
        where = (f"epoch {epoch + 1}, step {bad_at - self.epoch_start + 1} (global step {bad_at + 1})" if bad_at >= 0
                 else f"epoch {epoch + 1} on another rank")
        value = f"{float(self.bad_value):.4g}" if bad_at >= 0 else "non-finite"
        raise TrainingError(f"the loss became {value} at {where}; the last good checkpoint in {out_dir} is kept; "
                            "lower trainer.lr or set trainer.grad_clip")


def train(method: DeepMethod, data: ImageDataset, ctx: RunContext) -> Prediction:
    """Train ``method`` on ``data.train_images()`` and cluster ``data.images``."""
    cfg, device, dist = ctx.trainer, ctx.device, ctx.dist
    timings: dict[str, float] = {}
    timer = Timer(timings)
    check_trainer(cfg, dist, device)
    if ctx.sync_bn and device.type != "cuda":
        raise ConfigError("hardware.sync_bn", "SyncBatchNorm runs on GPUs only; set hardware.sync_bn=false on the CPU")
    k = method.clusters_for(data)
    method.configure_clusters(k)  # networks that depend on K (MiCE's experts, InfoGAN's code) are built for it

    # 1. data on the device (or on the host, each batch copied ahead), views made on the device
    store = ImageStore(data.train_images(), device, ctx.placement)  # N×C×H×W uint8
    n, c, h, w = store.shape
    mean, std = channel_stats(store.images)
    if store.placement == "host":
        log.info("data.placement: the %d training images stay in host memory; each batch is copied to %s one step ahead", n, device)
    augment = Augmenter(ctx.augment, image_size=h, channels=c, mean=mean, std=std)
    if method.augmented and method.views_needed is not None and augment.num_views < method.views_needed:
        raise ConfigError("augment", f"{method.name} needs {method.views_needed} views per image but augment={ctx.augment.name} makes {augment.num_views}")
    per_rank = cfg.batch_size // dist.world_size
    # the last partial batch is dropped: queues need full batches
    steps_per_epoch = n * method.rows_per_image // cfg.batch_size
    if steps_per_epoch == 0:
        raise ConfigError("trainer.batch_size", f"{cfg.batch_size} is larger than the {n * method.rows_per_image} rows of an epoch; lower it")

    method.seed, method.dist = ctx.seed, dist
    method.check_batch(per_rank)

    # 2. networks and optimiser
    model = method.setup(ctx.backbone, InputShape(c, h, tuple(mean), tuple(std)))
    method.model = model
    if dist.enabled and ctx.sync_bn:
        model = method.model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    D.broadcast_parameters(model)
    params = [p for p in model.parameters() if p.requires_grad]
    precision = str(getattr(cfg.precision, "value", cfg.precision))
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    owned = method.owns_optimizers  # a GAN steps its own optimisers inside the training step
    optimizer: Optional[torch.optim.Optimizer] = None
    if owned:
        # several backward passes per step: gradients are averaged per optimiser after each
        # (one flat all-reduce), not by DDP's hooks, which expect one backward per forward
        steps = ManualSteps(method.configure_optimizers(cfg.lr), scaler, cfg.grad_clip, D.average_gradients)
        method.optimize = steps  # type: ignore[method-assign]
        optimizers = list(steps.optimizers.values())
        run_step = method.training_step
        if dist.enabled and ctx.grad_sync == "ddp":
            log.info("%s steps its own optimisers: each one's gradients are averaged over the ranks after its backward", method.name)
    else:
        # under DDP the method's whole step is the one forward whose backward all-reduces the gradients
        run_step = D.wrap_step(model, method.training_step, device, ctx.grad_sync, method.unused_parameters)
        optimizer = build_optimizer(cfg.optimizer, params, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.lars_eta, cfg.lars_clip,
                                    cfg.rmsprop_alpha, cfg.rmsprop_eps)
        optimizers = [optimizer]
    if cfg.compile:
        # in place: state_dict keys stay the same. mode "reduce-overhead" replays CUDA graphs,
        # which pays off for small nets whose steps are kernel-launch bound on a GPU
        mode = str(getattr(cfg.compile_mode, "value", cfg.compile_mode))
        for child in model.children():
            child.compile(mode=mode)

    # random streams of the loop itself: identical on every rank, restored on resume. Every rank
    # draws the global batch's view parameters and keeps its share (Augmenter's shard), so the
    # views, and the run, do not depend on the number of ranks
    order_gen = torch.Generator().manual_seed(ctx.seed)
    view_gen = torch.Generator(device=device).manual_seed(ctx.seed * 1_000_003)
    shard = (dist.rank, dist.world_size)

    # 3. resume
    out_dir = ctx.out_dir or Path(".")
    path = out_dir / ctx.checkpoint_name
    # the budget covers the whole run: a clustering stage's share (cluster.minutes) is kept back
    reserve = getattr(ctx.cluster, "minutes", None) or 0.0
    clock = Clock(None if cfg.max_minutes is None else 60.0 * (cfg.max_minutes - reserve))
    start_epoch, step, history = 0, 0, []
    finished = False  # a resume from the final checkpoint of a step (ctx.keep_final) trains no more
    # a stage that trains on (SCAN) starts from the final model, so a resume must find it
    keep_final = bool(cfg.checkpoint_every) and (ctx.keep_final or getattr(ctx.cluster, "trains", False))
    stopped_early = False
    if ctx.resume and path.exists():
        state = ckpt.load(path, map_location=torch.device("cpu"))  # RNG states must be CPU bytes; load_state_dict copies to the device
        try:
            model.load_state_dict(state["model"])
            (steps if owned else optimizer).load_state_dict(state["optimizer"])  # type: ignore[union-attr]
        except (RuntimeError, ValueError, KeyError) as ex:
            raise ClusterbenchError(f"{path}: written by another method, backbone or dataset ({type(ex).__name__}); resume with the same config or delete it") from None
        scaler.load_state_dict(state["scaler"])
        method.load_method_state(state["method"])
        ckpt.set_rng_states(state["rng"])
        order_gen.set_state(state["order_gen"])
        views_state = state["view_gen"]
        if isinstance(views_state, (list, tuple)):  # written before views were drawn for the global batch: one stream per rank
            views_state = views_state[0]  # rank 0's is the one stream now (exactly so for a one-process run)
        view_gen.set_state(views_state.cpu())  # generator states are CPU bytes, CUDA ones too
        start_epoch, step, history = int(state["epoch"]), int(state["step"]), list(state["history"])
        clock.before_s = float(state["elapsed"])
        finished, stopped_early = bool(state.get("finished", False)), bool(state.get("stopped_early", False))
        log.info("resumed from %s at epoch %d (step %d)%s", path, start_epoch, step, ": training had finished" if finished else "")
    elif ctx.resume:
        log.info("resume=true but %s holds no checkpoint: starting from scratch", out_dir)
    health = HealthMonitor(k, method.chance_loss(), ctx.step, cosine=method.signed_features)
    for record in history:  # a resumed run's earlier epochs
        health.on_epoch(record)

    def save_checkpoint(epoch: int, final: bool = False) -> None:
        if not dist.is_main:
            return
        with timer("checkpoint"):
            ckpt.save(path, {
                "model": model.state_dict(),
                "optimizer": steps.state_dict() if owned else optimizer.state_dict(),  # type: ignore[union-attr]
                "scaler": scaler.state_dict(),
                "method": method.method_state(),
                "rng": ckpt.rng_states(),
                "order_gen": order_gen.get_state(),
                "view_gen": view_gen.get_state(),  # one stream, the same on every rank
                "epoch": epoch,
                "step": step,
                "schedule": {"total_steps": total_steps, "warmup_epochs": float(cfg.warmup_epochs), "lr": float(cfg.lr)},
                "history": history,
                "elapsed": clock.elapsed,
                "finished": final,
                "stopped_early": stopped_early,
            })

    def embed_all(fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        with eval_mode(model):  # E-steps and evaluation see BatchNorm's running statistics
            return embed_dataset(fn, store.images, mean, std, cfg.embed_batch_size, dist, cfg.channels_last, device=device)

    labels = data.label_array()

    def evaluate_now(final: bool = False) -> tuple[dict[str, float], np.ndarray, torch.Tensor, dict[str, Any]]:
        """Embed and cluster every image. Evaluations during training use the method's own
        read-out (cheap); the final one the run's clustering stage (``cluster=...``) if any."""
        with timer("embed"):
            features = embed_all(method.embed)
        ids: np.ndarray = np.zeros(0, dtype=np.int64)
        scores: dict[str, float] = {}
        info: dict[str, Any] = {}
        if dist.is_main and final and ctx.cluster is not None and not getattr(ctx.cluster, "trains", False):
            with timer("cluster_stage"):
                fit = ctx.cluster.fit(features, k, ctx.seed, method)
            ids, info = fit.assignments, {**fit.info, "clusters": fit.clusters, "confidence": fit.confidence}
        elif dist.is_main:  # k-means on every rank would give the same answer, slower
            with timer("cluster"):
                ids, info = method.predict(features, k, ctx.seed)
            def scored(assignments: Any, prefix: str = "") -> dict[str, float]:
                if labels is None:  # an unlabelled dataset: the run scores internal indices at the end
                    return {}
                result = evaluate(labels, np.asarray(assignments)[: len(data)])
                return {f"{prefix}{key}": float(result[key]) for key in ("nmi", "acc", "ari")}

            scores = scored(ids)
            scores.update({key: v for key, v in info.items() if isinstance(v, (int, float))})
            for name, other in info.get("alternatives", {}).items():  # e.g. MiCE's gating-only clusters
                scores.update(scored(other, f"{name}_"))
        if dist.is_main and ctx.probes is not None:  # labels reach the probes as they reach the evaluator
            with timer("probes"):
                scores.update(ctx.probes.scores(features[: len(data)]))
        return scores, ids, features, info

    # 4.–5. the loop
    total_steps = cfg.epochs * steps_per_epoch
    warmup = min(cfg.warmup_epochs / max(cfg.epochs, 1), 1.0)
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16, enabled=precision != "fp32")
    clock.start()
    budget_left = None if clock.budget_s is None else max(clock.budget_s - clock.before_s, 0.0)
    estimate = RunEstimate(cfg.epochs, steps_per_epoch, device.type, budget_left, stage=ctx.step or "")
    last_estep_s = 0.0  # the previous epoch's E-step: the next one costs about as much
    for epoch in range(start_epoch, start_epoch if finished else cfg.epochs):
        # stop at the budget, or before an E-step that would end past it with no step left to
        # train (MiCE's μ pass, PCL's and DeepCluster's k-means are whole passes over the set)
        if clock.out_of_time or (clock.budget_s is not None and epoch > start_epoch and clock.elapsed + last_estep_s >= clock.budget_s):
            stopped_early = True
            break
        model.train()
        t_epoch = time.perf_counter()
        with timer("epoch_start"):
            estep_log = method.on_epoch_start(EpochContext(epoch, n, device, ctx.seed, dist, embed_all, optimizer)) or {}
        estep_s = time.perf_counter() - t_epoch
        estimate.epoch_started(estep_s)
        last_estep_s = estep_s
        order = method.sample_order(n, steps_per_epoch * cfg.batch_size, order_gen)  # the epoch's rows, every rank's batches
        order_on_device = order.to(device)  # the steps' indices never come from the host
        first = dist.rank * per_rank

        def rows_of(i: int, where: torch.Tensor = order_on_device if store.placement == "device" else order) -> torch.Tensor:
            return where[i * cfg.batch_size + first : i * cfg.batch_size + first + per_rank]

        feed = store.feed(rows_of, steps_per_epoch)
        losses = torch.zeros((), device=device)
        logged: dict[str, torch.Tensor] = {}  # the step's other outputs, summed over the epoch
        watch = FiniteWatch(device, step)
        t_steps, done = time.perf_counter(), 0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=not (ctx.progress and dist.is_main))
        for i in bar:
            lr = learning_rate(max((step + 1) / total_steps, clock.fraction()), cfg.lr, warmup, cfg.schedule, cfg.min_lr)
            set_learning_rate(optimizers, lr)
            rows = rows_of(i, order_on_device)
            with timer("augment"):
                x = feed.get(i)
                views = augment(x, view_gen, shard) if method.augmented else [standardize(x, mean, std)]
                plain = standardize(x, mean, std) if method.plain_view else None
                if cfg.channels_last:
                    views = [v.contiguous(memory_format=torch.channels_last) for v in views]
                    plain = None if plain is None else plain.contiguous(memory_format=torch.channels_last)
            with timer("step"):
                with autocast:
                    out = run_step(Batch(views, rows, epoch, step, plain, augment.num_global if method.augmented else 1))
                loss = out["loss"]
                watch.add(loss.detach())
                if owned:  # the method stepped its optimisers (ManualSteps); the loss scale moves once a step
                    scaler.update()
                else:
                    assert optimizer is not None
                    backward_and_step(optimizer, loss, scaler, params, cfg.grad_clip, D.average_gradients if ctx.grad_sync == "flat" else None,
                                      lambda: method.before_optimizer_step(step))
                    scaler.update()
            losses += loss.detach().float()
            for key, value in out.items():
                if key != "loss" and isinstance(value, torch.Tensor) and value.numel() == 1:
                    logged[key] = logged.get(key, 0.0) + value.detach().float()
            step += 1
            done += per_rank * dist.world_size
            if dist.is_main:
                estimate.step_done(cfg.epochs - epoch - 1, steps_per_epoch - i - 1)
            if (i + 1) % cfg.sync_every == 0:  # the only reads of the device's numbers inside an epoch
                watch.check(epoch, out_dir)
                if dist.is_main and ctx.progress:
                    left = {} if clock.budget_s is None else {"budget_left": clock_text(clock.budget_s - clock.elapsed)}  # the run's, not the epoch's ETA
                    bar.set_postfix(loss=f"{float(losses) / (i + 1):.4f}", lr=f"{lr:.3g}", img_s=f"{done / (time.perf_counter() - t_steps):.0f}", **left, refresh=False)
            if clock.out_of_time:
                stopped_early = True
                break
        bar.close()
        watch.check(epoch, out_dir)  # before this epoch is logged, evaluated or checkpointed
        steps_done = i + 1
        record: dict[str, Any] = {
            **({"stage": ctx.step} if ctx.step else {}),
            "epoch": epoch + 1,
            "step": step,
            "loss": float(D.all_reduce_(losses, "mean")) / steps_done,
            **{key: float(D.all_reduce_(torch.as_tensor(v, device=device), "mean")) / steps_done for key, v in sorted(logged.items())},
            **{key: float(v) for key, v in estep_log.items()},
            "lr": lr,
            "images_per_s": done / (time.perf_counter() - t_steps),
            "epoch_start_s": estep_s,  # the method's E-step, inside
            "epoch_s": time.perf_counter() - t_epoch,  # the whole epoch, E-step included
            "elapsed_s": clock.elapsed,
        }
        last = epoch + 1 == cfg.epochs or stopped_early
        if cfg.eval_every and (epoch + 1) % cfg.eval_every == 0 and not last:
            scores, ids, features, _ = evaluate_now()
            record.update(scores)
            if dist.is_main:
                record.update(health.measure(ids, features))
        history.append(record)
        health.on_epoch(record)
        if dist.is_main:
            write_history(out_dir, ctx.history_before + history)
            if ctx.tracker is not None:
                ctx.tracker.log_epoch(record, len(ctx.history_before) + len(history))
            log.info("%sepoch %d: %s", f"{ctx.step} " if ctx.step else "", epoch + 1, ", ".join(f"{key} {v:.4g}" for key, v in record.items() if isinstance(v, float)))
        if stopped_early:
            break  # a partial epoch is not checkpointed: resuming repeats it from its start
        if cfg.checkpoint_every and ((epoch + 1) % cfg.checkpoint_every == 0 or last) and not (last and keep_final):
            save_checkpoint(epoch + 1)
    if keep_final and not finished:
        # the next step starts from this very model (after a budget stop too), and a resume with it
        save_checkpoint(int(history[-1]["epoch"]) if history else start_epoch, final=True)

    # 6. the final clustering, of the model as it is now: after a budget stop that is later than
    # the last checkpoint, and it is what the run exports (model.pt)
    scores, ids, features, final = evaluate_now(final=True)
    if dist.is_main:
        scores.update(health.measure(ids, features))
    if history:
        new = {key: v for key, v in scores.items() if key not in history[-1]}
        history[-1].update(scores)
        health.on_epoch(history[-1])
        if dist.is_main:
            write_history(out_dir, ctx.history_before + history)
            if ctx.tracker is not None and new:  # the final evaluation's numbers, at the last epoch's step
                ctx.tracker.log_epoch({**new, **({"stage": ctx.step} if ctx.step else {})}, len(ctx.history_before) + len(history))
    info: dict[str, Any] = {
        "epochs": history[-1]["epoch"] if history else 0,
        "steps": step,
        "stopped_early": stopped_early,
        "train_minutes": clock.elapsed / 60.0,
        **({f"estimate_{ctx.step}" if ctx.step else "estimate": estimate.result} if estimate.result else {}),
        "images_per_s": float(np.mean([r["images_per_s"] for r in history])) if history else 0.0,
        **{key: v for key, v in scores.items() if key not in ("nmi", "acc", "ari")},  # e.g. gating_acc, inertia
        "health": health.warnings,
    }
    if ctx.step or getattr(ctx.cluster, "trains", False):  # each step's own read-out, recorded beside the final result
        info["scores"] = {key: scores[key] for key in ("nmi", "acc", "ari") if key in scores}
    if stopped_early:
        log.info("trainer.max_minutes=%s reached after %d steps; evaluating", cfg.max_minutes, step)
    if not dist.is_main:
        return Prediction(np.zeros(len(data), np.int64), k, timings, info, history=ctx.history_before + history)
    confidence = final.get("confidence")
    with torch.no_grad(), eval_mode(model):  # a generative method's images (InfoGAN's, a row per code)
        samples = method.samples()
    return Prediction(
        ids[: len(data)], k, timings, info, history=ctx.history_before + history,
        embeddings=features[: len(data)].float().cpu().numpy(),
        clusters=final.get("clusters"),
        confidence=None if confidence is None else np.asarray(confidence)[: len(data)],
        preprocess={"mean": mean, "std": std},
        samples=samples,
    )


def check_trainer(cfg: Any, dist: D.DistInfo, device: torch.device) -> None:
    """Impossible trainer values, each named with its fix (run.py calls it before any data is
    read; the engine again, for callers that skip run.py)."""
    for key in ("epochs", "batch_size", "embed_batch_size", "sync_every"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"trainer.{key}", f"{getattr(cfg, key)} is not allowed; use a positive integer")
    if cfg.max_minutes is not None and cfg.max_minutes <= 0:
        raise ConfigError("trainer.max_minutes", f"{cfg.max_minutes} is not a budget; use a positive number of minutes or null")
    if cfg.batch_size % dist.world_size:
        raise ConfigError("trainer.batch_size", f"{cfg.batch_size} does not split over {dist.world_size} ranks; use a multiple of {dist.world_size}")
    for key in ("eval_every", "checkpoint_every"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"trainer.{key}", f"{getattr(cfg, key)} is negative; use 0 (off) or a number of epochs")
    if cfg.warmup_epochs < 0 or cfg.min_lr < 0:
        raise ConfigError("trainer.warmup_epochs" if cfg.warmup_epochs < 0 else "trainer.min_lr", "must not be negative")
    if cfg.grad_clip is not None and cfg.grad_clip <= 0:
        raise ConfigError("trainer.grad_clip", f"{cfg.grad_clip} is not a norm; use a positive value or null")
    check_optimizer_values(cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.lars_eta, cfg.rmsprop_alpha, cfg.rmsprop_eps)
    precision = str(getattr(cfg.precision, "value", cfg.precision))
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("trainer.precision", "fp16 autocast needs a CUDA device; use bf16 or fp32 on the CPU")


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] units, from an evenly spaced sample of the images."""
    stride = max(1, len(images) // STATS_SAMPLE)
    x = images[::stride].float().div_(255.0).transpose(0, 1).reshape(images.shape[1], -1)  # C×M
    return x.mean(1).tolist(), x.std(1).clamp_min(1e-3).tolist()


@torch.no_grad()
def embed_dataset(
    fn: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    mean: list[float],
    std: list[float],
    batch_size: int,
    dist: D.DistInfo,
    channels_last: bool = False,
    progress: bool = False,
    device: Optional[torch.device] = None,
) -> torch.Tensor:
    """``fn`` of every standardised image, in order. Under DDP each rank embeds an equal shard
    (the last padded by repetition) and the shards are gathered. ``images`` may live on the host
    (``data.placement=host``): each chunk goes to ``device`` as uint8, so no float copy of the
    whole set is ever made."""
    device = device or images.device
    n = len(images)
    shard = math.ceil(n / dist.world_size)
    rows = torch.arange(dist.rank * shard, (dist.rank + 1) * shard, device=images.device).clamp_max(n - 1)
    out: Optional[torch.Tensor] = None  # shard×D, allocated at the first batch: no list of parts and second copy
    for s in tqdm(range(0, shard, batch_size), desc="embedding", unit="batch", leave=False, disable=not (progress and dist.is_main)):
        x = standardize(images[rows[s : s + batch_size]].to(device, non_blocking=True), mean, std)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        features = fn(x)  # B×D
        if out is None:
            out = torch.empty((shard, *features.shape[1:]), dtype=torch.float32, device=features.device)
        out[s : s + len(features)] = features
    assert out is not None  # shard ≥ 1: every rank embeds at least one image
    return D.all_gather(out)[:n]


def write_history(out_dir: Path, history: list[dict[str, Any]]) -> None:
    """metrics.jsonl: one line per epoch, rewritten whole (atomically) so a kill never tears a line."""
    atomic_write_bytes(out_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history).encode())
