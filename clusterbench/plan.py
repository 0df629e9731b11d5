"""What a run is about to do, said aloud before training: the recipe and where its numbers come
from, the backbone, the views, the optimiser, epochs, batch, precision, budget and device.

A user who types ``clusterbench method=swav dataset=cifar10`` should see, before any step, whether
that is SwAV's CIFAR recipe or the generic defaults. The same block goes into metrics.json as
``plan`` (with the engine's measured estimate, clusterbench.eta, added at the end).

The recipe is ``conf/method_dataset/<method>_<dataset>.yaml`` when that file exists (Hydra
applied it); its source is its ``# Source:`` comment line (else its first comment line).
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any, Optional

from omegaconf import DictConfig

log = logging.getLogger(__name__)


def recipe_file(method: str, dataset: str) -> Optional[str]:
    """The method × dataset recipe Hydra applied (``method_dataset/<m>_<d>``), or None."""
    name = f"{method}_{dataset}"
    return f"method_dataset/{name}" if (resources.files("clusterbench.conf") / "method_dataset" / f"{name}.yaml").is_file() else None


def recipe_source(recipe: str) -> str:
    """The recipe's ``# Source:`` line, else its first comment line: where its numbers come from."""
    text = (resources.files("clusterbench.conf") / f"{recipe}.yaml").read_text()
    comments = [line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#") and "@package" not in line]
    source = next((c for c in comments if c.lower().startswith("source:")), comments[0] if comments else "no source comment")
    return source[len("source:"):].strip() if source.lower().startswith("source:") else source


def _value(v: Any) -> str:
    return str(getattr(v, "value", v))


def views_of(augment: DictConfig, image_size: int) -> str:
    size = augment.get("global_size") or image_size
    views = f"{augment.name}: {augment.global_crops} × {size} px"
    if augment.get("local_crops"):
        local = augment.get("local_size") or round(image_size * 3 / 7)
        views += f" + {augment.local_crops} × {local} px (multi-crop)"
    return views


def backbone_of(backbone: DictConfig) -> str:
    settings = {k: v for k, v in backbone.items() if k != "name" and v is not None and not str(k).startswith("_")}
    shown = ", ".join(f"{k} {_value(v)}" for k, v in list(settings.items())[:4])
    return f"{backbone.name}" + (f" ({shown})" if shown else "")


def describe_plan(cfg: DictConfig, method: str, dataset: str, augment: DictConfig, backbone: DictConfig, image_size: int, device: str,
                  deep: bool, experiment: Optional[str] = None, augmented: bool = True) -> dict[str, Any]:
    """The plan as recorded in metrics.json (strings and numbers). ``augmented``: whether the
    method trains on views at all (InfoGAN and the AE by default see the plain images)."""
    recipe = recipe_file(method, dataset)
    plan: dict[str, Any] = {
        "method": method, "dataset": dataset, "device": device,
        "recipe": recipe, "source": recipe_source(recipe) if recipe else None,
        **({"experiment": experiment} if experiment else {}),
    }
    if deep:
        t = cfg.trainer
        plan.update({
            "backbone": backbone_of(backbone),
            "views": views_of(augment, image_size) if augmented else f"none: the plain images ({image_size} px)",
            "optimizer": f"{_value(t.optimizer)}, lr {t.lr:g}, weight decay {t.weight_decay:g}, {_value(t.schedule)} schedule"
                         + (f", {t.warmup_epochs:g} warm-up epochs" if t.warmup_epochs else ""),
            "epochs": int(t.epochs), "batch_size": int(t.batch_size), "precision": _value(t.precision),
            "max_minutes": None if t.max_minutes is None else float(t.max_minutes),
        })
    return plan


def format_plan(plan: dict[str, Any]) -> str:
    """The console block."""
    if plan["recipe"]:
        head = f"recipe: {plan['recipe']}.yaml — {plan['source']}"
    else:
        head = (f"recipe: none for {plan['method']} × {plan['dataset']}: the generic defaults "
                f"(conf/method/{plan['method']}.yaml, the dataset's augmentation, the trainer's defaults)")
    lines = [head] + ([f"experiment: {plan['experiment']}"] if plan.get("experiment") else [])
    if "backbone" in plan:
        budget = f", budget {plan['max_minutes']:g} min (trainer.max_minutes)" if plan["max_minutes"] is not None else ""
        lines += [f"backbone: {plan['backbone']}", f"views: {plan['views']}", f"optimiser: {plan['optimizer']}",
                  f"epochs {plan['epochs']}, batch {plan['batch_size']}, precision {plan['precision']}{budget}"]
    lines.append(f"device: {plan['device']}")
    return "\n".join(["run plan:", *("  " + line for line in lines)])


__all__ = ["describe_plan", "format_plan", "recipe_file", "recipe_source"]
