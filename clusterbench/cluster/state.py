"""A fitted clustering as plain arrays: what ``clusters.npz`` holds, and how a new point is assigned.

Every final clustering of a run (a method's k-means, GMM, prototypes or posterior) is written
as one flat dict of NumPy arrays, so it loads with ``np.load(allow_pickle=False)`` anywhere,
and ``assign`` maps features of new images to cluster ids with exactly the arithmetic the run
used, so predicting the run's own images reproduces its assignments bit for bit.

Keys every state has:

- ``kind``: ``kmeans`` (nearest centroid), ``gmm`` (most probable component),
  ``prototypes`` (argmax of cosine scores against prototypes, SwAV's), ``posterior``
  (the feature columns already are the cluster posterior, MiCE's) or ``linear`` (argmax of a
  linear classifier's softmax, SCAN's clustering head);
- ``num_clusters``;
- ``normalize``: L2-normalise the features first (the contrastive methods' geometry);
- optionally ``columns``: keep only the features' first ``columns`` first;
- optionally ``pca_mean`` and ``pca_components``: project ``(x − mean) @ componentsᵀ`` first.

Kind-specific keys: ``centroids`` and ``spherical`` (kmeans); ``weights``, ``means``,
``covariances``, ``precisions_cholesky``, ``covariance_type`` (gmm, scikit-learn's names);
``prototypes`` and ``temperature`` (prototypes); ``gating_centres`` and
``expert_prototypes`` (posterior: kept for reuse, the assignment needs only the features);
``weight`` (K×D) and ``bias`` (K) (linear);
umap: the gmm keys of the mixture in the UMAP space, plus ``train_features``,
``train_embedding``, ``n_neighbors`` and ``metric`` (``clusterbench.stages.umap.place``).
"""

from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

from clusterbench.cluster.kmeans import assign as nearest_centroid

ArrayLike = Union[np.ndarray, torch.Tensor]
KINDS = ("kmeans", "gmm", "prototypes", "posterior", "umap", "linear")


def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def kmeans_state(centroids: ArrayLike, *, normalize: bool, spherical: bool = False, pca: Optional[dict[str, np.ndarray]] = None,
                 columns: Optional[int] = None) -> dict[str, np.ndarray]:
    """The state of a k-means fit on (optionally normalised / projected) features; ``columns``:
    the fit saw only the features' first ``columns`` (SCAE's object presences, before its posterior sums)."""
    c = _np(centroids).astype(np.float32)
    return {"kind": np.asarray("kmeans"), "num_clusters": np.asarray(len(c)), "normalize": np.asarray(normalize),
            "centroids": c, "spherical": np.asarray(spherical), **(pca or {}),
            **({"columns": np.asarray(columns)} if columns is not None else {})}


def gmm_state(model: Any, *, normalize: bool = False, pca: Optional[dict[str, np.ndarray]] = None) -> dict[str, np.ndarray]:
    """The state of a fitted scikit-learn ``GaussianMixture``."""
    return {"kind": np.asarray("gmm"), "num_clusters": np.asarray(model.n_components), "normalize": np.asarray(normalize),
            "weights": model.weights_, "means": model.means_, "covariances": model.covariances_,
            "precisions_cholesky": model.precisions_cholesky_, "covariance_type": np.asarray(model.covariance_type), **(pca or {})}


def prototype_state(prototypes: ArrayLike, temperature: float) -> dict[str, np.ndarray]:
    """SwAV's prototypes (rows L2-normalised); features are the head's normalised output z."""
    p = _np(prototypes).astype(np.float32)
    return {"kind": np.asarray("prototypes"), "num_clusters": np.asarray(len(p)), "normalize": np.asarray(True),
            "prototypes": p, "temperature": np.asarray(float(temperature))}


def posterior_state(num_clusters: int, **arrays: ArrayLike) -> dict[str, np.ndarray]:
    """A method whose features' first ``num_clusters`` columns are the cluster posterior."""
    return {"kind": np.asarray("posterior"), "num_clusters": np.asarray(num_clusters), "normalize": np.asarray(False),
            **{k: _np(v) for k, v in arrays.items()}}


def linear_state(weight: ArrayLike, bias: ArrayLike) -> dict[str, np.ndarray]:
    """A linear clustering head on the (un-normalised) features: cluster = argmax of W·x + b."""
    w = _np(weight).astype(np.float32)
    return {"kind": np.asarray("linear"), "num_clusters": np.asarray(len(w)), "normalize": np.asarray(False),
            "weight": w, "bias": _np(bias).astype(np.float32)}


def pca_of(model: Any) -> dict[str, np.ndarray]:
    """A fitted scikit-learn PCA as the projection keys of a state."""
    return {"pca_mean": model.mean_.astype(np.float32), "pca_components": model.components_.astype(np.float32)}


def project(features: ArrayLike, state: dict[str, Any]) -> torch.Tensor:
    """The features the clustering was fitted on: normalised and/or PCA-projected as the state says."""
    x = torch.as_tensor(features).float()
    if "columns" in state:
        x = x[:, : int(state["columns"])]
    if bool(state["normalize"]):
        x = F.normalize(x, dim=1)
    if "pca_components" in state:
        mean = torch.as_tensor(state["pca_mean"], device=x.device)
        components = torch.as_tensor(state["pca_components"], device=x.device)
        x = (x - mean) @ components.T  # N×d
    return x


def assign(state: dict[str, Any], features: ArrayLike) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Cluster ids of ``features`` (N×D) under ``state``, and a confidence per point where the
    clustering has one (GMM responsibility, prototype softmax, posterior), else None."""
    kind = str(state["kind"])
    x = project(features, state)
    if kind == "kmeans":
        centroids = torch.as_tensor(state["centroids"], device=x.device)
        if bool(state["spherical"]):  # cosine k-means compares unit vectors, as ``kmeans`` does
            x = F.normalize(x, dim=1)
        ids, _ = nearest_centroid(x, centroids, bool(state["spherical"]))
        return ids.cpu().numpy(), None
    if kind in ("gmm", "umap"):
        if kind == "umap":  # a GMM in the UMAP space: place the points there first
            from clusterbench.stages.umap import place

            x = torch.from_numpy(place(state, x))
        model = gmm_from_state(state)
        prob = model.predict_proba(x.cpu().numpy().astype(np.float64))
        return model.predict(x.cpu().numpy().astype(np.float64)).astype(np.int64), prob.max(1)
    if kind == "prototypes":
        scores = x @ torch.as_tensor(state["prototypes"], device=x.device).T  # N×K cosine
        prob = torch.softmax(scores / float(state["temperature"]), dim=1)
        return scores.argmax(1).cpu().numpy(), prob.max(1).values.cpu().numpy()
    if kind == "posterior":
        q = x[:, : int(state["num_clusters"])]
        return q.argmax(1).cpu().numpy(), q.max(1).values.cpu().numpy()
    if kind == "linear":
        logits = x @ torch.as_tensor(state["weight"], device=x.device).T + torch.as_tensor(state["bias"], device=x.device)  # N×K
        prob = torch.softmax(logits, dim=1)
        return logits.argmax(1).cpu().numpy(), prob.max(1).values.cpu().numpy()
    raise ValueError(f"unknown clustering kind {kind!r}; expected one of {', '.join(KINDS)}")


def gmm_from_state(state: dict[str, Any]) -> Any:
    """A scikit-learn ``GaussianMixture`` carrying the saved parameters, ready to ``predict``."""
    from sklearn.mixture import GaussianMixture

    model = GaussianMixture(n_components=int(state["num_clusters"]), covariance_type=str(state["covariance_type"]))
    model.weights_ = np.asarray(state["weights"])
    model.means_ = np.asarray(state["means"])
    model.covariances_ = np.asarray(state["covariances"])
    model.precisions_cholesky_ = np.asarray(state["precisions_cholesky"])
    return model
