"""Where a result came from: library versions and the code's git commit."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

# Keys that say where files live or what gets written, not what is computed.
NOT_HASHED = {"store", "night", "plots", "save_assignments", "rerun", "export"}
NOT_HASHED_DATASET = {"root", "download"}

LIBRARIES = ("clusterbench", "torch", "torchvision", "faiss-cpu", "faiss-gpu", "scikit-learn", "scipy", "numpy", "hydra-core", "omegaconf")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_commit() -> Optional[dict[str, object]]:
    """The commit of the clusterbench source tree (and whether it has local changes), if any."""
    source = Path(__file__).resolve().parent
    try:
        run = lambda *args: subprocess.run(["git", *args], cwd=source, capture_output=True, text=True, timeout=5, check=True).stdout.strip()  # noqa: E731
        top = Path(run("rev-parse", "--show-toplevel"))
        if not (top / "clusterbench").resolve() == source:
            return None  # an installed copy that happens to sit inside some other repository
        return {"commit": run("rev-parse", "HEAD"), "dirty": bool(run("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return None


def config_hash(config: dict[str, Any]) -> str:
    """A short hash of what determines the result: the resolved config minus paths and
    bookkeeping, so the same experiment on another machine or night hashes the same."""
    kept = {k: v for k, v in config.items() if k not in NOT_HASHED}
    if isinstance(kept.get("dataset"), dict):
        kept["dataset"] = {k: v for k, v in kept["dataset"].items() if k not in NOT_HASHED_DATASET}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]
