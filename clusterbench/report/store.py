"""The results store: one SQLite file that nightly jobs append every finished run to.

One row per run: id, time, night, git commit, config hash, overrides, metrics, timings,
status. SQLite because it is in the standard library, survives concurrent appends from
several jobs (file locking), and any tool can read it.

Scores live in the ``metrics`` JSON column, so new ones need no migration: stores written
before unlabelled runs existed open as they are, and their rows (no ``labels`` key) read as
labelled. An unlabelled run's row has ``"labels": false`` and the internal scores instead of
NMI / ACC / ARI; plain SQL reaches them with ``json_extract(metrics, '$.silhouette')``.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Union

from clusterbench.metrics import INTERNAL_SCORES
from clusterbench.report.runs import LABEL_SCORES, RunRecord, is_labelled, scores_of

STORED_METRICS = ("labels", *LABEL_SCORES, *INTERNAL_SCORES, "internal_sample", "n_samples", "n_clusters", "n_classes")
# Carried into a store-based report as they are in a run folder's metrics.json: the probes'
# scores and the training-health signs (a list of {sign, epoch, ...}; [] when healthy).
REPORTED_EXTRAS = ("knn_acc", "linear_acc", "health")

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id      TEXT PRIMARY KEY,
    recorded_at TEXT NOT NULL,   -- ISO-8601 UTC time the run ended
    night       TEXT NOT NULL,   -- the nightly batch it belongs to (YYYY-MM-DD)
    git_commit  TEXT,
    config_hash TEXT NOT NULL,
    method      TEXT NOT NULL,
    dataset     TEXT NOT NULL,
    protocol    TEXT NOT NULL,   -- split and dataset options: runs of different protocols never mix
    variant     TEXT NOT NULL,   -- the method's distinguishing overrides
    seed        INTEGER,
    overrides   TEXT NOT NULL,   -- JSON list
    metrics     TEXT NOT NULL,   -- JSON {labels, nmi, acc, ari, purity | silhouette, ..., n_samples, ...}
    timings     TEXT NOT NULL,   -- JSON {phase: seconds}
    status      TEXT NOT NULL,   -- completed | failed
    error       TEXT,
    run_dir     TEXT
);
CREATE INDEX IF NOT EXISTS runs_night ON runs (night);
"""

COLUMNS = ("run_id", "recorded_at", "night", "git_commit", "config_hash", "method", "dataset", "protocol", "variant", "seed", "overrides", "metrics", "timings", "status", "error", "run_dir")
JSON_COLUMNS = ("overrides", "metrics", "timings")


@dataclass
class StoredRun:
    run_id: str
    recorded_at: str
    night: str
    git_commit: Optional[str]
    config_hash: str
    method: str
    dataset: str
    protocol: str
    variant: str
    seed: Optional[int]
    overrides: list[str]
    metrics: dict[str, Any]
    timings: dict[str, float]
    status: str
    error: Optional[str] = None
    run_dir: Optional[str] = None


def _connect(path: Union[str, Path]) -> sqlite3.Connection:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(str(path), timeout=60)  # wait for other jobs' appends, don't fail
    con.executescript(SCHEMA)
    return con


def append(path: Union[str, Path], run: StoredRun) -> None:
    """Add (or replace, for a re-run with the same id) one run."""
    values = [json.dumps(getattr(run, c)) if c in JSON_COLUMNS else getattr(run, c) for c in COLUMNS]
    with closing(_connect(path)) as con, con:
        con.execute(f"INSERT OR REPLACE INTO runs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})", values)


def load(path: Union[str, Path], night: Optional[str] = None) -> list[StoredRun]:
    """All runs, oldest first, or those of one night."""
    if not Path(path).exists():
        raise FileNotFoundError(f"results store {path} does not exist")
    query = f"SELECT {', '.join(COLUMNS)} FROM runs" + (" WHERE night = ?" if night else "") + " ORDER BY recorded_at"
    with closing(_connect(path)) as con:
        rows: Iterable[tuple] = con.execute(query, (night,) if night else ()).fetchall()
    return [StoredRun(**{c: json.loads(v) if c in JSON_COLUMNS else v for c, v in zip(COLUMNS, row)}) for row in rows]


def nights(path: Union[str, Path]) -> list[str]:
    with closing(_connect(path)) as con:
        return [r[0] for r in con.execute("SELECT DISTINCT night FROM runs ORDER BY night")]


def from_result(result: dict[str, Any], run_dir: Union[str, Path]) -> StoredRun:
    """The store row of a run's metrics.json (or of a failed run's error.json)."""
    git = result.get("git") or {}
    return StoredRun(
        run_id=result.get("run_id") or Path(run_dir).resolve().as_posix(),
        recorded_at=result.get("finished_at") or result.get("recorded_at") or "",
        night=result.get("night") or "",
        git_commit=git.get("commit"),
        config_hash=result.get("config_hash") or "",
        method=result.get("method", "?"),
        dataset=result.get("dataset", "?"),
        protocol=result.get("protocol", "split=all"),
        variant=result.get("variant", ""),
        seed=result.get("seed"),
        overrides=list(result.get("overrides", [])),
        metrics={k: result[k] for k in (*STORED_METRICS, *REPORTED_EXTRAS) if k in result},
        timings={**result.get("timings", {}), **({"wall": result["wall_seconds"]} if "wall_seconds" in result else {})},
        status=result.get("status", "completed"),
        error=result.get("error"),
        run_dir=str(Path(run_dir).resolve()),
    )


def to_record(run: StoredRun) -> RunRecord:
    """A store row as a report record, so a night's runs aggregate like run folders do."""
    return RunRecord(
        path=Path(run.run_dir or run.run_id),
        status=run.status,
        method=run.method,
        dataset=run.dataset,
        protocol=run.protocol,
        variant=run.variant,
        seed=run.seed,
        overrides=run.overrides,
        metrics=scores_of(run.metrics),
        n_clusters=run.metrics.get("n_clusters"),
        error=run.error,
        wall_seconds=run.timings.get("wall"),
        result={"n_classes": run.metrics.get("n_classes"), **{k: run.metrics[k] for k in REPORTED_EXTRAS if k in run.metrics}},
        labelled=is_labelled(run.metrics),
    )
