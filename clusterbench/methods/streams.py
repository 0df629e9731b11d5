"""A method's own random stream on the run's device: rank-independent and checkpointed.

Methods that draw random numbers inside a training step (InfoGAN's latent codes, SCAE's presence
noise and canvas shifts) draw them for the *global* batch from a generator seeded identically on
every rank, and each rank keeps its own rows: a run does not depend on how many ranks share the
batch, and a 2-rank run equals the 1-process one. The generator lives on the device (no host copy
per step) and its state goes into the checkpoint, so a resumed run draws what the uninterrupted
run would have.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from clusterbench.distributed import DistInfo


class RankStream:
    """``rows(n, *shape)``: this rank's ``n`` rows of a draw for the global batch."""

    def __init__(self, salt: int) -> None:
        self.salt = salt  # separates the streams of one run's methods (and of a method's uses)
        self.seed = 0
        self.dist = DistInfo()
        self.gen: Optional[torch.Generator] = None
        self._pending: Optional[torch.Tensor] = None  # a resumed state waiting for the device

    def bind(self, seed: int, dist: DistInfo) -> None:
        """The run's seed and ranks (the method's, set by the engine before training)."""
        self.seed, self.dist = seed, dist

    def generator(self, device: torch.device) -> torch.Generator:
        if self.gen is None or self.gen.device.type != device.type:
            self.gen = torch.Generator(device=device)
            self.gen.manual_seed(self.seed * 1_000_003 + self.salt)
            if self._pending is not None:
                self.gen.set_state(self._pending)
                self._pending = None
        return self.gen

    def _mine(self, draw: torch.Tensor, rows: int) -> torch.Tensor:
        return draw[self.dist.rank * rows : (self.dist.rank + 1) * rows]

    def uniform(self, rows: int, *shape: int, device: torch.device, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        """U(low, high), rows × shape, float32."""
        total = rows * self.dist.world_size
        draw = torch.rand(total, *shape, device=device, generator=self.generator(device))
        return self._mine(draw * (high - low) + low, rows)

    def integers(self, high: int, rows: int, *shape: int, device: torch.device) -> torch.Tensor:
        """Uniform integers in [0, high), rows × shape."""
        total = rows * self.dist.world_size
        return self._mine(torch.randint(high, (total, *shape), device=device, generator=self.generator(device)), rows)

    def state(self) -> Optional[torch.Tensor]:
        if self.gen is not None:
            return self.gen.get_state()
        return self._pending

    def load(self, state: Optional[Any]) -> None:
        if state is not None:
            self._pending = state.cpu()
            self.gen = None  # remade on the device at the next draw, from this state
