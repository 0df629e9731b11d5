"""The small base of every clustering stage."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch


@dataclass
class StageFit:
    """A stage's answer: ids of the fitted features, the state that assigns new ones
    (``clusterbench.cluster.state``), confidences where the stage has them, and facts."""

    assignments: np.ndarray  # N int64
    clusters: dict[str, np.ndarray]
    confidence: Optional[np.ndarray] = None
    info: dict[str, Any] = field(default_factory=dict)


class Stage(ABC):
    """Clusters a trained method's features (``method.embed`` of the un-augmented images)."""

    name: str = "stage"
    #: a stage that trains the network further (SCAN) runs ``train(method, data, ctx, prediction)``
    #: on the engine after the method's training, instead of ``fit`` on its features
    trains: bool = False
    #: minutes of ``trainer.max_minutes`` kept for this stage (set from ``cluster.minutes``)
    minutes: Optional[float] = None
    #: chosen by the method × dataset recipe (``recipe_cluster``), not by ``cluster=...``
    from_recipe: bool = False

    def check(self, method: Any, k: int) -> None:
        """Reject, before any training, a method (or K) this stage cannot follow."""

    def check_budget(self, trainer: Any) -> None:
        """Reject, before any training, a budget this stage cannot keep to."""

    @abstractmethod
    def fit(self, features: torch.Tensor, k: int, seed: int, method: Any) -> StageFit:
        """Cluster ``features`` (N×D) into ``k`` groups, reproducibly for ``seed``."""

    def settings(self) -> dict[str, Any]:
        """The stage's settings, recorded with the result (the protocol)."""
        return {key: value for key, value in vars(self).items() if not key.startswith("_") and key != "from_recipe"} | {"minutes": self.minutes}
