"""The run folder's reusable exports, written by a run and read by ``clusterbench-predict``.

Beside ``metrics.json`` a run leaves (each written atomically):

- ``features.npy``: the final embedding of every evaluated image (N×D, float16 by default);
- ``clusters.npz``: the fitted clustering as arrays (``clusterbench.cluster.state``), enough
  to assign a new point;
- ``model.pt``: a plain dict that loads with ``torch.load(..., weights_only=True)``: the final
  weights (``state_dict``; ``backbone`` alone, un-prefixed, loads into torchvision's ResNet
  with ``strict=False``), the resolved config, the input shape and the per-channel mean and
  std the network was fed with;
- ``assignments.csv``: ``index, name, cluster, confidence, label``.

This module owns the format: its version, the names, how each file is read back.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import nn

from clusterbench.errors import ClusterbenchError
from clusterbench.io import atomic_save_npy, atomic_write_bytes

FORMAT = "clusterbench.model"
VERSION = 1  # bump when model.pt's layout changes; older files then get a clear error
FEATURES, CLUSTERS, MODEL, ASSIGNMENTS = "features.npy", "clusters.npz", "model.pt", "assignments.csv"


class RunFolderError(ClusterbenchError):
    """A run folder that cannot be used for prediction (missing, old or damaged files)."""


def write_features(out_dir: Path, features: np.ndarray, dtype: str = "float16") -> None:
    atomic_save_npy(out_dir / FEATURES, np.ascontiguousarray(features, dtype=np.dtype(dtype)))


def write_clusters(out_dir: Path, clusters: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **{key: np.asarray(value) for key, value in clusters.items()})
    atomic_write_bytes(out_dir / CLUSTERS, buf.getvalue())


def read_clusters(run_dir: Path) -> dict[str, np.ndarray]:
    path = run_dir / CLUSTERS
    if not path.is_file():
        raise RunFolderError(f"{path} not found: {run_dir} is not a finished run of this clusterbench version; run it again")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except Exception as ex:  # noqa: BLE001 — a truncated or foreign file
        raise RunFolderError(f"{path}: not a readable clusters file ({type(ex).__name__}); run the experiment again") from None


def cpu_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies: a channels_last or CUDA tensor loads anywhere, into any layout."""
    return {key: value.detach().cpu().contiguous() for key, value in module.state_dict().items()}


def write_model(
    out_dir: Path,
    *,
    model: Optional[nn.Module],
    config: dict[str, Any],
    method: str,
    input_shape: Sequence[int],
    num_clusters: int,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
) -> None:
    """model.pt: everything ``clusterbench-predict`` needs to rebuild the network and preprocess
    an image, in types ``weights_only=True`` accepts (tensors, str, numbers, lists, dicts)."""
    backbone = getattr(model, "backbone", None) if model is not None else None
    state = {
        "format": FORMAT,
        "version": VERSION,
        "method": method,
        "config": config,
        "input_shape": [int(v) for v in input_shape],  # C, H, W
        "num_clusters": int(num_clusters),
        "mean": None if mean is None else [float(v) for v in mean],  # per channel, [0, 1] units
        "std": None if std is None else [float(v) for v in std],
        "state_dict": {} if model is None else cpu_state_dict(model),
        "backbone": {} if not isinstance(backbone, nn.Module) else cpu_state_dict(backbone),
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(out_dir / MODEL, buf.getvalue())


def read_model(run_dir: Path) -> dict[str, Any]:
    """model.pt of a finished run, checked for this version's format."""
    path = run_dir / MODEL
    if not run_dir.is_dir():
        raise RunFolderError(f"{run_dir} is not a folder; give the run folder that holds metrics.json and model.pt")
    if not path.is_file():
        raise RunFolderError(f"{path} not found: {run_dir} is not a finished run, or was written by a clusterbench older than "
                             "the exports (model.pt); run the experiment again")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as ex:  # noqa: BLE001 — truncated zip, foreign pickle, refused globals
        raise RunFolderError(f"{path}: not a readable clusterbench model ({type(ex).__name__}); run the experiment again") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise RunFolderError(f"{path} is not a clusterbench model.pt (no '{FORMAT}' format tag); give a clusterbench run folder")
    if state.get("version") != VERSION:
        raise RunFolderError(f"{path} has format version {state.get('version')}, this clusterbench reads version {VERSION}; "
                             "run the experiment again with this version")
    return state


def write_assignments_csv(
    path: Path,
    assignments: np.ndarray,
    *,
    names: Optional[Sequence[str]] = None,
    confidence: Optional[np.ndarray] = None,
    labels: Optional[np.ndarray] = None,
    class_names: Optional[Sequence[str]] = None,
) -> None:
    """One row per image in dataset order: index, name (file path or name, else empty),
    cluster, confidence (empty where the clustering has none), label (the class name where
    the dataset has labels, else empty)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["index", "name", "cluster", "confidence", "label"])
    for i, cluster in enumerate(np.asarray(assignments)):
        label = ""
        if labels is not None:
            label = class_names[int(labels[i])] if class_names else str(int(labels[i]))
        writer.writerow([
            i,
            "" if names is None else names[i],
            int(cluster),
            "" if confidence is None else f"{float(confidence[i]):.6g}",
            label,
        ])
    atomic_write_bytes(path, buf.getvalue().encode())


def read_assignments_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
