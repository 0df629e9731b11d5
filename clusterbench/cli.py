"""The ``clusterbench`` command: Hydra composes the config, ``run.run_experiment`` does the work.

Errors a user can fix (an unknown option or key, a wrong type, a missing or corrupt dataset
file, an impossible value) print one line, ``error: ...``, that names the key or path and
how to fix it, and exit with status 2 and no traceback. Anything else is a bug and keeps its
traceback. ``HYDRA_FULL_ERROR=1`` shows the traceback of every error.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException, MissingConfigException, OverrideParseException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from clusterbench.config import register_schemas
from clusterbench.errors import ClusterbenchError
from clusterbench.showconfig import job_config_text, wants_job_config
from clusterbench.sweep import SweepReport

USER_ERROR = 2
log = logging.getLogger(__name__)
_tracebacks = {"show": False}  # the user set HYDRA_FULL_ERROR=1: keep every traceback


def describe(ex: BaseException) -> Optional[str]:
    """A one-line explanation of a user error, or None when ``ex`` looks like a bug."""
    if isinstance(ex, ClusterbenchError):
        return str(ex)
    if isinstance(ex, MissingConfigException):
        return _missing_option(ex)
    if isinstance(ex, OverrideParseException):
        return f"cannot parse the override '{ex.override}': {_first_line(ex.message)}"
    cause = ex.__cause__ if isinstance(ex, CompactHydraException) else ex
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)):
        return _unknown_key(cause)
    if isinstance(cause, ValidationError):
        key = cause.full_key or "a config value"
        return f"{key}: {_first_line(cause.msg)}; fix the value (see `clusterbench --cfg job` for the types)"
    if isinstance(cause, OmegaConfBaseException):
        key = f"{cause.full_key}: " if cause.full_key else ""
        return f"{key}{_first_line(cause.msg)}"
    if isinstance(ex, CompactHydraException):
        message = _first_line(str(ex))
        if "No match in the defaults list" in str(ex) or "Could not override" in message:
            return f"{message} It is neither a config key nor a config group; check the spelling (`clusterbench --help` lists them)"
        return message
    return None


def _first_line(text: str) -> str:
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


def _missing_option(ex: MissingConfigException) -> str:
    missing = ex.missing_cfg_file or ""
    group, _, option = missing.rpartition("/")
    if ex.options is not None and group:
        valid = ", ".join(sorted(ex.options))
        return f"{group.replace('/', '.')}={option} is not a known option; choose one of: {valid}"
    return _first_line(str(ex))


def _unknown_key(err: OmegaConfBaseException) -> str:
    key = err.full_key or str(err.key)
    parent = err.parent_node
    valid = sorted(str(k) for k in parent.keys()) if isinstance(parent, DictConfig) else []
    hint = f"valid keys there: {', '.join(k for k in valid if not k.startswith('_'))}" if valid else "check the spelling"
    group = key.split(".", 1)[0]
    if group in ("backbone", "augment") and "." in key:  # the default option lacks it; the recipe's choice may have it
        hint += f" (a key of the recipe's recipe_{group} option: write +{key}=...)"
    return f"unknown config key '{key}'; {hint}"


@hydra.main(version_base="1.3", config_path="pkg://clusterbench.conf", config_name="config")
def _job(cfg: DictConfig) -> Optional[dict[str, Any]]:
    """One Hydra job. User errors end it here, so Hydra adds no lines of its own.

    In a sweep every failure is recorded (error.json, the store) and the sweep goes on;
    ``SweepReport`` turns the failures into the exit status at the end.
    """
    from clusterbench import run  # torch & co. load after the config composed

    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = list(hydra_cfg.overrides.task)
    sweeping = hydra_cfg.mode == RunMode.MULTIRUN
    if sweeping and not cfg.rerun:
        previous = run.finished_result(out_dir, cfg)
        if previous is not None:
            print(f"skip: {out_dir} already holds this finished run (rerun=true runs it again)")
            return previous
    try:
        return run.run_experiment(cfg, out_dir, overrides)
    except Exception as ex:
        message = describe(ex)
        if _tracebacks["show"] or (message is None and not sweeping):
            raise
        if message is None:  # a bug inside a sweep: keep its traceback in the job's log
            log.exception("job failed")
            message = f"{type(ex).__name__}: {_first_line(str(ex))} (traceback in {out_dir})"
        print(f"error: {message}", file=sys.stderr)
        run.record_failure(cfg, out_dir, overrides, message)
        if not sweeping:
            raise SystemExit(USER_ERROR) from None
        return None


def quiet_secondary_rank() -> None:
    """Under torchrun, ranks above 0 write nothing: no .hydra/ folder, no log file, and a
    scratch run folder (rank 0 tells them its own, where checkpoints are)."""
    import tempfile

    from clusterbench.distributed import env_rank

    args = [a for a in sys.argv[1:] if not a.startswith(("hydra.run.dir=", "hydra.output_subdir=", "hydra/job_logging="))]
    scratch = tempfile.mkdtemp(prefix=f"clusterbench-rank{env_rank()}-")
    sys.argv[1:] = [*args, f"hydra.run.dir={scratch}", "hydra.output_subdir=null", "hydra/job_logging=disabled"]


def refuse_overwrite(argv: list[str]) -> Optional[str]:
    """The error for a single run pointed (``hydra.run.dir=...``) at a folder that holds an
    earlier run's checkpoint, without ``resume=true``: checked before Hydra writes anything
    there, so the earlier run's checkpoint, config and log stay as they were. Sweeps keep their
    own rule (finished jobs are skipped, unfinished ones start again)."""
    if any(a in ("-m", "--multirun") for a in argv):
        return None
    values = dict(a.split("=", 1) for a in argv if "=" in a and not a.startswith("-"))
    run_dir = values.get("hydra.run.dir")
    resume = values.get("resume", "false").strip().lower() in ("true", "yes", "on", "1")
    if run_dir is None or resume or not (Path(run_dir) / "checkpoint.pt").is_file():
        return None
    return (f"{run_dir} holds the checkpoint of an earlier run; add resume=true to continue it, "
            "or choose a new hydra.run.dir to start a new run")


def main() -> None:
    """Entry point of ``clusterbench`` and ``python -m clusterbench``."""
    if any(a in ("--help", "-h") for a in sys.argv[1:]):  # answered from the config folders: no torch, no composing
        from clusterbench.help import help_text

        print(help_text())
        return
    from clusterbench.distributed import env_rank  # torch: every path from here on needs it

    register_schemas()
    refusal = refuse_overwrite(sys.argv[1:])
    if refusal is not None and env_rank() == 0:
        print(f"error: {refusal}", file=sys.stderr)
        sys.exit(USER_ERROR)
    _tracebacks["show"] = os.environ.get("HYDRA_FULL_ERROR") == "1"
    SweepReport.failed.clear()
    # Let Hydra's composition errors reach us as exceptions instead of its multi-line report.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    if env_rank() > 0:
        quiet_secondary_rank()
    try:
        job_overrides = wants_job_config(sys.argv[1:])
        if job_overrides is not None:  # resolved, with the recipe named; nothing runs
            print(job_config_text(job_overrides), end="")
            return
        _job()
    except Exception as ex:
        message = describe(ex)
        if message is None or _tracebacks["show"]:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(USER_ERROR)
    if SweepReport.failed:
        print(f"error: {len(SweepReport.failed)} job(s) of the sweep failed: {'; '.join(SweepReport.failed)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
