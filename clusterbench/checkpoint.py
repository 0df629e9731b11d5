"""Training checkpoints: written atomically, loadable with ``torch.load(weights_only=True)``.

A checkpoint holds everything the next epoch depends on — the networks, the optimiser, the
schedule position, the method's own state (queues, prototypes, assignments), every random
generator and the loop's counters — so a resumed run on the CPU continues bit for bit.

Only tensors, numbers, strings, lists, tuples and dicts go in: ``weights_only=True`` (torch's
safe loader, which runs no pickled code) then reads them back. NumPy's and Python's RNG states
are converted to that vocabulary here.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from clusterbench.errors import ClusterbenchError
from clusterbench.io import atomic_write_bytes

CHECKPOINT = "checkpoint.pt"


def rng_states() -> dict[str, Any]:
    """The global RNGs: Python's, NumPy's legacy one, torch's CPU and CUDA generators."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_states(states: dict[str, Any]) -> None:
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically: a kill at any moment leaves the previous file whole."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load(path: Path, map_location: Optional[torch.device] = None) -> dict[str, Any]:
    """Read a checkpoint with the safe loader; a damaged file is a one-line error naming it."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as ex:  # noqa: BLE001 — truncated zip, wrong format, unpickling refused ...
        raise ClusterbenchError(f"{path}: not a readable checkpoint ({type(ex).__name__}); delete it to start over, or set resume=false") from None
