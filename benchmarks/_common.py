"""What the benchmark scripts share: run the CLI into a folder, read results, print tables."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def run_clusterbench(overrides: Sequence[str], out: Path) -> dict:
    """One `python -m clusterbench` run into ``out``; returns its metrics.json."""
    cmd = [sys.executable, "-m", "clusterbench", *overrides, f"hydra.run.dir={out}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return json.loads((out / "metrics.json").read_text())


def recluster(run_dir: Path, stage: str, out: Path) -> dict:
    """``clusterbench-recluster RUN_DIR cluster=STAGE --out OUT`` (the same trained model, another
    read-out); returns the stage's metrics.json."""
    cmd = [sys.executable, "-m", "clusterbench.recluster", str(run_dir), f"cluster={stage}", "--out", str(out), "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return json.loads((out / "metrics.json").read_text())


def finished(out: Path) -> dict | None:
    """``out``'s metrics.json when a run there finished (an interrupted benchmark continues), else None."""
    done = out / "metrics.json"
    return json.loads(done.read_text()) if done.exists() else None


def sweep(overrides: Sequence[str], seeds: Sequence[int]) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        return [run_clusterbench([*overrides, f"seed={s}"], Path(tmp) / f"seed{s}") for s in seeds]


def mean_std(values: Sequence[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * sd:.1f}"


def summary_row(name: str, runs: list[dict]) -> str:
    """Markdown row: NMI / ACC / ARI mean ± std (%), mean wall seconds, fit seconds."""
    cells = [mean_std([r[m] for r in runs]) for m in ("nmi", "acc", "ari", "purity")]
    wall = statistics.mean(r["wall_seconds"] for r in runs)
    fit = statistics.mean(r["timings"].get("fit", 0.0) for r in runs)
    return f"| {name} | {' | '.join(cells)} | {wall:.1f} | {fit:.1f} |"


TABLE_HEAD = "| run | NMI % | ACC % | ARI % | purity % | wall s | fit s |\n|---|---|---|---|---|---|---|"
