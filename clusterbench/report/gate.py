"""The nightly regression gate: compare a report's means with a stored baseline.

A baseline file holds, for every (method variant, dataset protocol), the mean NMI / ACC /
ARI of a chosen night and the tolerated drop per metric (absolute, as a fraction). A drop
beyond the tolerance, or a baseline entry with no completed run tonight, is a regression.

Runs without labels have no NMI / ACC / ARI and are never gated: they never enter a baseline,
and a baseline entry whose runs now have no labels is reported as such (the labels went
missing, or the entry was written by hand), not compared.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from clusterbench.io import atomic_write_json
from clusterbench.report.table import METRICS, Report

DEFAULT_TOLERANCE = 0.02  # 2 points: about twice the seed-to-seed std of k-means on MNIST


@dataclass
class Regression:
    row: str
    column: str
    metric: Optional[str]  # None: the entry has no completed run
    baseline: Optional[float]
    current: Optional[float]
    tolerance: float
    runs: list[str]
    unlabelled: bool = False  # the entry's runs completed, but without labels to score

    def __str__(self) -> str:
        where = f"{self.row} on {self.column}"
        if self.unlabelled:
            return (f"REGRESSION {where}: the baseline holds {'/'.join(m.upper() for m in METRICS)} for it, but its runs now have "
                    f"no labels, so they cannot be compared (runs without labels are never gated); restore the labels or drop "
                    f"the entry from the baseline; runs: {', '.join(self.runs)}")
        if self.metric is None:
            return f"REGRESSION {where}: in the baseline but no completed run now"
        assert self.baseline is not None and self.current is not None
        return (
            f"REGRESSION {where}: {self.metric.upper()} {100 * self.baseline:.1f} → {100 * self.current:.1f} "
            f"({100 * (self.current - self.baseline):+.1f} points, tolerance {100 * self.tolerance:.1f}); runs: {', '.join(self.runs)}"
        )


def make_baseline(report: Report, source: str, tolerance: float = DEFAULT_TOLERANCE) -> dict[str, Any]:
    """Means of every cell, each with a tolerance that covers its own seed noise.

    A cell's tolerance per metric is the larger of ``tolerance`` and three standard errors of
    its mean (3·std/√runs over the baseline night's seeds): a GMM whose ACC swings ±7 points
    between seeds must not fail the gate every other night, while a steady k-means keeps the
    tight default.
    """
    entries = []
    for (row, column), cell in sorted(report.cells.items()):
        noise = {m: round(max(tolerance, 3 * cell.std(m) / math.sqrt(cell.n)), 4) for m in METRICS}
        entries.append({"row": row, "column": column, "runs": cell.n, **{m: cell.mean(m) for m in METRICS}, "tolerance": noise})
    return {"source": source, "tolerance": {m: tolerance for m in METRICS}, "entries": entries}


def write_baseline(path: Union[str, Path], baseline: dict[str, Any]) -> None:
    atomic_write_json(path, baseline)


def check(report: Report, baseline: dict[str, Any], tolerance: Optional[float] = None) -> list[Regression]:
    """Every metric that fell by more than its tolerance, and every baseline entry now missing.

    ``tolerance`` overrides the file's per-metric tolerances; an entry may carry its own
    ``tolerance`` (a number or a per-metric dict) for noisy methods.
    """
    found: list[Regression] = []
    defaults = baseline.get("tolerance", {})
    for entry in baseline.get("entries", []):
        row, column = entry["row"], entry["column"]
        cell = report.cells.get((row, column))
        if cell is None:
            unlabelled = report.internal.get((row, column))
            runs = [str(r.path) for r in unlabelled.runs] if unlabelled else []
            found.append(Regression(row, column, None, None, None, 0.0, runs, unlabelled=unlabelled is not None))
            continue
        for m in METRICS:
            if m not in entry:
                continue
            own = entry.get("tolerance", defaults.get(m, DEFAULT_TOLERANCE))
            tol = tolerance if tolerance is not None else float(own[m] if isinstance(own, dict) else own)
            current = cell.mean(m)
            if current < entry[m] - tol - 1e-12:
                found.append(Regression(row, column, m, entry[m], current, tol, [str(r.path) for r in cell.runs]))
    return found


def read_baseline(path: Union[str, Path]) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"baseline file {path} does not exist; write one with --write-baseline") from None
    except json.JSONDecodeError as ex:
        raise ValueError(f"baseline file {path} is not valid JSON ({ex.msg} at line {ex.lineno})") from None
