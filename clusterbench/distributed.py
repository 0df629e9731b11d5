"""Multi-process training under ``torchrun`` (``hardware=ddp``), and its single-process no-ops.

Every helper here is correct in one process too, so the engine and the methods call them
unconditionally: ``all_gather`` returns its input, ``all_reduce_`` does nothing, and so on.

Gradients are averaged by ``average_gradients`` after ``backward()`` rather than by wrapping the
model in ``DistributedDataParallel``: the methods call their sub-networks (query and key
encoders, heads, prototypes) one by one, outside any single ``forward``, which DDP's hooks do
not see. One flattened all-reduce per step costs the same as DDP's buckets on small models.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable, Optional

import torch
import torch.distributed as dist
from torch import nn

from clusterbench.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes files, logs and draws progress bars."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def env_rank() -> int:
    """This process's rank from torchrun's environment (0 when not launched by it)."""
    return int(os.environ.get("RANK", "0"))


def init(distributed: bool, device: torch.device, backend: Optional[str] = None) -> DistInfo:
    """Join the process group torchrun set up; one process when ``distributed`` is false."""
    if not distributed:
        return DistInfo()
    if not launched_by_torchrun():
        raise ConfigError(
            "hardware.distributed",
            "needs one process per device started by torchrun: `torchrun --nproc_per_node=N -m clusterbench hardware=ddp ...`; "
            "use hardware=auto for one process",
        )
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group(backend=backend or ("nccl" if device.type == "cuda" else "gloo"), rank=rank, world_size=world)
    return DistInfo(rank, world, local)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank gets here (no-op on one process)."""
    if _active():
        dist.barrier()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@torch.no_grad()
def all_gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``x`` (same shape on each) along dim 0, in rank order. No gradient."""
    if not _active():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def all_reduce_(x: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In-place sum (or ``op="mean"``) over ranks; returns ``x``."""
    if _active():
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        if op == "mean":
            x /= dist.get_world_size()
    return x


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (pickled; for small things such as paths)."""
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def broadcast_(x: torch.Tensor, src: int = 0) -> torch.Tensor:
    """In place: every rank gets rank ``src``'s ``x`` (same shape and dtype on each); returns ``x``.
    For results computed once and shared, such as an E-step's k-means."""
    if _active():
        dist.broadcast(x, src=src)
    return x


def any_true(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any: ranks must stop together, or they deadlock."""
    if not _active():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def average_gradients(params: Iterable[nn.Parameter]) -> None:
    """Average the gradients over ranks with one flattened all-reduce."""
    if not _active():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_parameters(module: nn.Module, src: int = 0) -> None:
    """Start every rank from rank ``src``'s weights and buffers."""
    if not _active():
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=src)
