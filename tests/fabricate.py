"""Fabricated run folders in the layout `clusterbench` writes, for report tests and benchmarks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence


PIXEL_PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
                          "0000000d49444154789c6360f8cfc00000030101001892f0ad0000000049454e44ae426082")


def fabricate_run(
    path: Path,
    method: str,
    dataset: str,
    seed: int,
    scores: Optional[dict] = None,
    overrides: Sequence[str] = (),
    split: str = "all",
    status: str = "completed",
    n_clusters: int = 10,
    n_classes: int = 10,
    night: str = "2026-11-24",
    labels: Optional[bool] = True,
    health: Optional[Sequence] = None,
    probes: Optional[dict] = None,
    plots: Sequence[str] = (),
) -> Path:
    """A run folder: .hydra/ always; metrics.json if completed, error.json if failed, else neither.

    ``labels=False`` fabricates a run on images without labels: its metrics.json has
    ``"labels": false``, the internal scores (``scores`` overrides them) and no NMI / ACC /
    ARI / purity. ``labels=None`` leaves the key out, as results written before it existed.
    ``health``: the metrics.json ``health`` list (sign names or whole dicts; None: no key, as
    results from before health checks); ``probes``: ``knn_acc`` / ``linear_acc``; ``plots``:
    PNG file names (``curves.png``) to create in the run folder (a 1-pixel image each).
    """
    from clusterbench.report.runs import protocol_of, variant_of

    path.mkdir(parents=True, exist_ok=True)
    hydra = path / ".hydra"
    hydra.mkdir(exist_ok=True)
    all_overrides = [f"method={method}", f"dataset={dataset}", f"seed={seed}", *overrides]
    (hydra / "overrides.yaml").write_text("".join(f"- {o}\n" for o in all_overrides))
    (hydra / "config.yaml").write_text(f"seed: {seed}\ndataset:\n  name: {dataset}\n  split: {split}\n")
    (hydra / "hydra.yaml").write_text(f"hydra:\n  runtime:\n    choices:\n      method: {method}\n      dataset: {dataset}\n")
    common = {
        "method": method, "dataset": dataset, "split": split, "seed": seed, "night": night,
        "protocol": protocol_of(split, all_overrides), "variant": variant_of(all_overrides), "overrides": all_overrides,
    }
    if status == "completed":
        if labels is False:
            sizes = [100 // n_clusters + (i < 100 % n_clusters) for i in range(n_clusters)]
            scores = {"silhouette": 0.3, "calinski_harabasz": 120.0, "davies_bouldin": 1.1, "effective_clusters": 0.9 * n_clusters,
                      "cluster_sizes": sizes, "internal_sample": 100, **(scores or {})}
            scores = {"labels": False, **scores}
        else:
            scores = scores or {"nmi": 0.5, "acc": 0.5, "ari": 0.5}
            scores = {**({"labels": labels} if labels is not None else {}), **scores, "purity": scores.get("purity", scores["acc"])}
        result = {**scores, **common, "n_samples": 100,
                  "n_clusters": n_clusters, "n_classes": n_classes if labels is not False else None, "status": "completed", "wall_seconds": 1.0,
                  "timings": {"fit": 0.5}, "run_id": f"{night}-{path.name}-{seed}", "finished_at": f"{night}T01:00:00+00:00", "config_hash": "x"}
        if health is not None:
            result["health"] = [w if isinstance(w, dict) else {"sign": w, "epoch": 1, "detail": f"{w} fabricated", "hint": "none"} for w in health]
        result.update(probes or {})
        (path / "metrics.json").write_text(json.dumps(result))
        for name in plots:
            (path / name).write_bytes(PIXEL_PNG)
    elif status == "failed":
        (path / "error.json").write_text(json.dumps({"status": "failed", "error": "method.pca_dim: 99 is too large", **common}))
    return path
