"""``cluster=own``: the method's own assignment — SwAV's prototype argmax (with as many
prototypes as clusters), MiCE's posterior — instead of a clustering of its features."""

from __future__ import annotations

from typing import Any

import torch

from clusterbench.errors import ConfigError
from clusterbench.stages.base import Stage, StageFit

OWN_KINDS = ("prototypes", "posterior")


class OwnStage(Stage):
    name = "own"

    def check(self, method: Any, k: int) -> None:
        if not getattr(method, "own_assignment", False):
            raise ConfigError("cluster", f"{method.name} assigns no clusters of its own (only SwAV and MiCE do); "
                              "use cluster=kmeans, gmm or umap")
        prototypes = getattr(method, "num_prototypes", k)
        if isinstance(prototypes, int) and prototypes != k:
            raise ConfigError("cluster", f"{method.name}'s own assignment needs as many prototypes as clusters; "
                              f"set method.num_prototypes={k}, or use cluster=kmeans")

    def fit(self, features: torch.Tensor, k: int, seed: int, method: Any) -> StageFit:
        ids, info = method.predict(features, k, seed)
        clusters = info.pop("clusters")
        if str(clusters["kind"]) not in OWN_KINDS:
            raise ConfigError("cluster", f"{method.name} has its own assignment only with as many prototypes as clusters "
                              f"(method.num_prototypes={k}); set it, or use cluster=kmeans")
        confidence = info.pop("confidence", None)
        info.pop("alternatives", None)
        return StageFit(ids, clusters, confidence, {key: v for key, v in info.items() if isinstance(v, (int, float))})
