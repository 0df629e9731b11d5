"""The whole run's time on this device, estimated from its first measured steps.

After ``STEPS`` optimiser steps (the first epoch's E-step included: it recurs every epoch) the
engine knows the cost of a step here, on this device, with this recipe, rather than a guess:

    estimate = (epoch-start seconds) × epochs + (seconds per step) × total steps

The first step (allocations, cuDNN autotuning, lazy imports) is left out of the per-step cost.
A budget (``trainer.max_minutes``) caps the estimate and says how many epochs it leaves. On a
CPU an estimate over an hour warns and names the ways out. Logged once; recorded in
metrics.json under ``plan.estimate``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Optional

log = logging.getLogger(__name__)

STEPS = 20  # measured steps before the estimate
SLOW_CPU_S = 3600.0  # a CPU run longer than this gets a warning


def duration(seconds: float) -> str:
    """4 s, 12 min, 3 h 05 min, 2 d 4 h: the words of the console block."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.0f} min"
    hours, minutes = divmod(int(round(minutes)), 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


@dataclass
class RunEstimate:
    """Fed by the engine's loop; ``result`` is None until ``STEPS`` steps were measured."""

    epochs: int
    steps_per_epoch: int
    device: str
    budget_s: Optional[float] = None
    stage: str = ""  # a second stage's name (scan, selflabel): its own estimate
    steps: int = STEPS
    epoch_start_s: float = 0.0
    first_step_end: Optional[float] = None
    counted: int = 0
    result: Optional[dict[str, Any]] = field(default=None)

    def epoch_started(self, seconds: float) -> None:
        if self.result is None:  # the first measured epoch's E-step stands for every epoch's
            self.epoch_start_s = max(self.epoch_start_s, seconds)

    def step_done(self, epochs_left: int, steps_left_this_epoch: int) -> None:
        """After every optimiser step. ``epochs_left`` / ``steps_left_this_epoch``: what the run
        still has to do (a resumed run has less than the whole)."""
        if self.result is not None:
            return
        now = time.perf_counter()
        if self.first_step_end is None:
            self.first_step_end = now
            return
        self.counted += 1
        if self.counted < self.steps:
            return
        per_step = (now - self.first_step_end) / self.counted
        remaining_steps = epochs_left * self.steps_per_epoch + steps_left_this_epoch
        total = per_step * (self.epochs * self.steps_per_epoch) + self.epoch_start_s * self.epochs
        left = per_step * remaining_steps + self.epoch_start_s * epochs_left
        self.result = {"measured_steps": self.counted, "seconds_per_step": per_step, "epoch_start_s": self.epoch_start_s,
                       "whole_run_s": total, "remaining_s": left}
        budget = ""
        if self.budget_s is not None and left > self.budget_s:
            per_epoch = per_step * self.steps_per_epoch + self.epoch_start_s
            self.result["budget_epochs"] = self.budget_s / per_epoch if per_epoch > 0 else None
            budget = f"; the budget (trainer.max_minutes) stops it after {duration(self.budget_s)}, ≈ {self.budget_s / per_epoch:.1f} epochs"
        log.info("estimated %s on %s: %s for %d epochs (%.3g s a step over %d steps, %s of E-step an epoch)%s",
                 f"{self.stage} stage" if self.stage else "run", self.device, duration(total), self.epochs, per_step, self.counted, duration(self.epoch_start_s), budget)
        if self.device == "cpu" and left > SLOW_CPU_S and (self.budget_s is None or self.budget_s > SLOW_CPU_S):
            log.warning("this %s needs ≈ %s on the CPU: set trainer.max_minutes=... for a budget, fewer trainer.epochs, or run on a GPU "
                        "(hardware=gpu)", f"{self.stage} stage" if self.stage else "run", duration(left))


__all__ = ["RunEstimate", "duration", "STEPS", "SLOW_CPU_S"]
