"""``clusterbench-suite``: run a nightly suite, store every run, report, and gate.

    clusterbench-suite benchmarks/suites/nightly.yaml                   # sequential, here
    clusterbench-suite benchmarks/suites/nightly.yaml --launcher joblib # local parallel jobs
    clusterbench-suite benchmarks/suites/nightly.yaml --launcher submitit_slurm \
        hydra.launcher.partition=gpu hydra.launcher.timeout_min=60      # a Slurm cluster

A suite file lists entries; each is methods × datasets × seeds with its own overrides
(the budgets: ``dataset.limit``, ``trainer.max_minutes``, ...). Each entry becomes one
Hydra multirun into ``<out>/<night>/<entry>``, so re-running the same night skips the jobs
that already finished (a pre-empted nightly job is simply started again). Every run is
appended to the suite's SQLite store; the night's report goes to ``<out>/<night>``; with a
baseline, a regression makes the exit status 1.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Sequence

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from clusterbench.report import cli as report_cli


@dataclass
class Entry:
    name: str
    methods: list[str]
    datasets: list[str]
    seeds: list[int]
    overrides: list[str] = field(default_factory=list)


@dataclass
class Suite:
    name: str
    out: str
    store: str
    entries: list[Entry]
    baseline: Optional[str] = None
    tolerance: Optional[float] = None


def load_suite(path: Path) -> Suite:
    """Read and type-check a suite file (OmegaConf, so ${oc.env:...} works in it)."""
    try:
        raw = OmegaConf.merge(OmegaConf.structured(Suite), OmegaConf.load(path))
        suite: Suite = OmegaConf.to_object(raw)  # type: ignore[assignment]
    except FileNotFoundError:
        raise ValueError(f"suite file {path} does not exist") from None
    except OmegaConfBaseException as ex:
        raise ValueError(f"suite file {path}: {str(ex).splitlines()[0]}") from None
    names = [e.name for e in suite.entries]
    if len(set(names)) != len(names):
        raise ValueError(f"suite file {path}: entry names must be unique (they name the sweep folders)")
    return suite


def entry_command(entry: Entry, suite: Suite, night: str, launcher: Optional[str], extra: Sequence[str]) -> list[str]:
    """The `clusterbench -m ...` command line of one entry."""
    cmd = [sys.executable, "-m", "clusterbench", "-m",
           f"method={','.join(entry.methods)}", f"dataset={','.join(entry.datasets)}", f"seed={','.join(map(str, entry.seeds))}",
           *entry.overrides, f"store={suite.store}", f"night={night}", f"hydra.sweep.dir={Path(suite.out) / night / entry.name}"]
    if launcher:
        cmd.append(f"hydra/launcher={launcher}")
    return [*cmd, *extra]


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="clusterbench-suite", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("suite", type=Path)
    p.add_argument("overrides", nargs="*", help="extra overrides for every job (e.g. hydra.launcher.* settings)")
    p.add_argument("--night", default=datetime.now(timezone.utc).date().isoformat(), help="batch label (default: today, UTC)")
    p.add_argument("--launcher", help="a Hydra launcher: joblib, submitit_slurm, submitit_local (their plugins must be installed)")
    p.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = p.parse_args(argv)
    try:
        suite = load_suite(args.suite)
    except ValueError as ex:
        print(f"error: {ex}", file=sys.stderr)
        return 2
    failed_entries = []
    for entry in suite.entries:
        cmd = entry_command(entry, suite, args.night, args.launcher, args.overrides)
        print("$ " + " ".join(cmd[1:]), flush=True)
        if args.dry_run:
            continue
        if subprocess.run(cmd).returncode != 0:
            failed_entries.append(entry.name)  # failed jobs are listed by the report below
    if args.dry_run:
        return 0
    report_args = [str(Path(suite.out) / args.night), "--out", str(Path(suite.out) / args.night)]
    if suite.baseline:
        report_args += ["--baseline", suite.baseline]
    if suite.tolerance is not None:
        report_args += ["--tolerance", str(suite.tolerance)]
    status = report_cli.main(report_args)
    if failed_entries:
        print(f"error: jobs failed in suite entries: {', '.join(failed_entries)}", file=sys.stderr)
    return status or (1 if failed_entries else 0)


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
