"""Run folders → records: what ran (method, variant, dataset, protocol, seed) and how it ended.

A run folder is any folder with Hydra's ``.hydra/`` in it. It ended ``completed`` when it
holds ``metrics.json``, ``failed`` when it holds ``error.json``, and is ``unfinished``
otherwise (still running, killed, or pre-empted).

Two strings decide what may be averaged together:
- the *variant*: the method's distinguishing overrides (``method.num_clusters=30``), which
  makes a row of the table;
- the *protocol*: the split and any dataset option (``dataset.limit=5000``), which makes a
  column. Runs of different protocols are never averaged together.
Seeds, paths and bookkeeping keys (hardware, plots, store, hydra.*) are neither.

A run on images without labels has no NMI / ACC / ARI: its record is ``labelled=False`` and
its metrics are the internal scores (silhouette, ...), which are never averaged with, compared
to or gated like label scores.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import yaml

from clusterbench.metrics import INTERNAL_SCORES

LABEL_SCORES = ("nmi", "acc", "ari", "purity")
NOT_VARIANT = ("seed", "dataset", "hydra", "store", "night", "plots", "save_assignments", "hardware", "rerun", "export",
               "eval")  # eval.*: how a run is measured (the probes; eval.split is its protocol), not a variant of the method
NOT_PROTOCOL = ("dataset.root", "dataset.download", "dataset.split")


STAGE = ("cluster",)  # cluster=... / cluster.*: the clustering stage, always said in a row's label (never "shared")


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _matches(key: str, prefixes: Sequence[str]) -> bool:
    return any(key == p or key.startswith(p + ".") or key.startswith(p + "/") for p in prefixes)


def is_stage(key: str) -> bool:
    """Whether an override key (``cluster``, ``cluster.pca_dim``) sets the clustering stage."""
    return _matches(key, STAGE)


def is_labelled(result: Mapping[str, Any]) -> bool:
    """Whether a result (metrics.json, or a store row's metrics) was scored against labels.

    Results from before unlabelled runs existed carry no ``labels`` key: they are labelled
    when they hold NMI, or at least hold no internal score instead.
    """
    flag = result.get("labels")
    if isinstance(flag, bool):
        return flag
    return "nmi" in result or not any(k in result for k in INTERNAL_SCORES)


def scores_of(result: Mapping[str, Any]) -> dict[str, float]:
    """The numeric scores a record aggregates: label scores of a labelled run (plus any
    internal ones), only internal scores of an unlabelled one. Undefined (None) scores are
    left out, so a seed whose silhouette was undefined does not count as 0."""
    keys = (*LABEL_SCORES, *INTERNAL_SCORES) if is_labelled(result) else INTERNAL_SCORES
    return {k: float(result[k]) for k in keys if isinstance(result.get(k), (int, float)) and not isinstance(result.get(k), bool)}


def _is_variant(override: str) -> bool:
    return not _matches(_key(override), NOT_VARIANT) and _key(override) != "method"


def variant_of(overrides: Iterable[str]) -> str:
    """The overrides that make a method variant, sorted: '' for the method's defaults."""
    return ",".join(sorted(o for o in overrides if _is_variant(o)))


def variant_items(overrides: Iterable[str], variant: str = "") -> dict[str, str]:
    """The variant's overrides by key (``{"method.queue_size": "method.queue_size=64"}``).

    Read from the overrides themselves (a value may hold a comma); a record without them
    (an old store row) falls back to splitting its variant string."""
    chosen = [o for o in overrides if _is_variant(o)] if overrides else [o for o in variant.split(",") if o]
    return {_key(o): o for o in chosen}


def override_value(override: str) -> str:
    """``method.momentum=0.99`` → ``0.99``."""
    return override.split("=", 1)[1] if "=" in override else ""


# A user's folder or array *is* its root or path: two folders are two datasets, never averaged.
OWN_DATA = {"dataset=folder": "dataset.root", "dataset=array": "dataset.path"}


def protocol_of(split: str, overrides: Iterable[str]) -> str:
    """``split=all`` plus every dataset option that changes which images are scored."""
    overrides = list(overrides)
    source = {OWN_DATA[o] for o in overrides if o in OWN_DATA}
    extra = sorted(_short_source(o) if _key(o) in source else o for o in overrides
                   if _key(o).startswith("dataset.") and (_key(o) not in NOT_PROTOCOL or _key(o) in source))
    return ",".join([f"split={split}", *extra])


def _short_source(override: str) -> str:
    """``dataset.root=/data/me/pets/`` → ``dataset.root=pets``: the folder's name keeps two
    datasets apart in a report without a full path in every column heading."""
    key, _, value = override.partition("=")
    return f"{key}={Path(value.rstrip('/')).name or value}"


@dataclass
class RunRecord:
    path: Path
    status: str  # completed | failed | unfinished
    method: str
    dataset: str
    protocol: str
    variant: str
    seed: Optional[int]
    overrides: list[str]
    metrics: dict[str, float] = field(default_factory=dict)  # nmi, acc, ari, purity (fractions); internal scores
    n_clusters: Optional[int] = None
    error: Optional[str] = None
    wall_seconds: Optional[float] = None
    result: dict[str, Any] = field(default_factory=dict)  # the whole metrics.json
    labelled: bool = True  # False: no labels, ``metrics`` holds internal scores only

    @property
    def row(self) -> str:
        """The table row this run belongs to."""
        return f"{self.method} ({self.variant})" if self.variant else self.method

    @property
    def items(self) -> dict[str, str]:
        """The variant's overrides by key."""
        return variant_items(self.overrides, self.variant)

    @property
    def column(self) -> str:
        """The table column group this run belongs to."""
        return self.dataset if self.protocol == "split=all" else f"{self.dataset} [{self.protocol}]"


def discover(paths: Iterable[os.PathLike | str]) -> list[Path]:
    """Every run folder at or below ``paths`` (a run, a multirun tree, or a parent of many): a
    folder with Hydra's ``.hydra/`` (a run, finished or not), or with a ``metrics.json`` of its own
    (a stage re-run by clusterbench-recluster, which has no Hydra config: its own row)."""
    found: list[Path] = []
    for root in paths:
        root = Path(root)
        if not root.exists():
            raise FileNotFoundError(f"{root} does not exist")
        for dirpath, dirnames, filenames in os.walk(root):
            if ".hydra" in dirnames or "metrics.json" in filenames:
                found.append(Path(dirpath))
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    return sorted(set(found))


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def load_run(path: Path) -> RunRecord:
    """Read one run folder. Only unfinished runs need Hydra's YAML: the JSON files carry all."""
    metrics_file, error_file = path / "metrics.json", path / "error.json"
    if metrics_file.exists():
        try:
            m = json.loads(metrics_file.read_text())
        except (OSError, json.JSONDecodeError) as ex:
            return _unfinished(path, f"unreadable metrics.json: {ex}")
        overrides = list(m.get("overrides", []))
        return RunRecord(
            path=path,
            status="completed",
            method=m["method"],
            dataset=m["dataset"],
            protocol=m.get("protocol") or protocol_of(m.get("split", "all"), overrides),
            variant=m.get("variant", variant_of(overrides)),
            seed=m.get("seed"),
            overrides=overrides,
            metrics=scores_of(m),
            n_clusters=m.get("n_clusters"),
            wall_seconds=m.get("wall_seconds"),
            result=m,
            labelled=is_labelled(m),
        )
    if error_file.exists():
        try:
            e = json.loads(error_file.read_text())
        except (OSError, json.JSONDecodeError):
            e = {"error": "unreadable error.json"}
        record = _unfinished(path, e.get("error"))
        record.status = "failed"
        return record
    return _unfinished(path, None)


def _unfinished(path: Path, error: Optional[str]) -> RunRecord:
    overrides = [str(o) for o in (_read_yaml(path / ".hydra" / "overrides.yaml") or [])]
    hydra_cfg = _read_yaml(path / ".hydra" / "hydra.yaml") or {}
    choices = (hydra_cfg.get("hydra", {}).get("runtime", {}) or {}).get("choices", {}) or {}
    config = _read_yaml(path / ".hydra" / "config.yaml") or {}
    split = str((config.get("dataset") or {}).get("split", "all"))
    return RunRecord(
        path=path,
        status="unfinished",
        method=str(choices.get("method", "?")),
        dataset=str(choices.get("dataset", "?")),
        protocol=protocol_of(split, overrides),
        variant=variant_of(overrides),
        seed=config.get("seed"),
        overrides=overrides,
        error=error,
    )


def load_runs(paths: Iterable[os.PathLike | str]) -> list[RunRecord]:
    return [load_run(p) for p in discover(paths)]
