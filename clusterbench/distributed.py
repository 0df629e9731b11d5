"""Multi-process training under ``torchrun`` (``hardware=ddp``), and its single-process no-ops.

Every helper here is correct in one process too, so the engine and the methods call them
unconditionally: ``all_gather`` returns its input, ``all_reduce_`` does nothing, and so on.

Gradients are averaged by torch's ``DistributedDataParallel``: bucketed all-reduces that start
while the backward pass is still running (``wrap_step``). The methods call their sub-networks
(query and key encoders, heads, prototypes) one by one, outside any single ``forward``, so the
engine wraps the method's whole training step as the one forward DDP sees (``TrainingStep``).
``hardware.grad_sync=flat`` keeps the older single flattened all-reduce after the backward, for
comparison (benchmarks/ddp_sync.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Iterable, Optional

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


_OWNED = False  # this module created the process group (and so tears it down)
GRAD_SYNCS = ("ddp", "flat")


def init(distributed: bool, device: torch.device, backend: Optional[str] = None, timeout_minutes: float = 30.0) -> DistInfo:
    """Join the process group torchrun set up; one process when ``distributed`` is false.

    ``timeout_minutes`` bounds every collective: a rank whose peers died or hang raises
    instead of waiting for ever (a dead peer's closed connection usually ends it at once)."""
    global _OWNED
    if timeout_minutes <= 0:
        raise ConfigError("hardware.timeout_minutes", f"{timeout_minutes} is not a timeout; use a positive number of minutes")
    if not distributed:
        return DistInfo()
    if not launched_by_torchrun():
        raise ConfigError(
            "hardware.distributed",
            "needs one process per device started by torchrun: `torchrun --nproc_per_node=N -m clusterbench hardware=ddp ...`; "
            "use hardware=auto for one process",
        )
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():  # a caller that set the group up (tests running many jobs in one group) keeps it
        dist.init_process_group(backend=backend or ("nccl" if device.type == "cuda" else "gloo"), rank=rank, world_size=world,
                                timeout=timedelta(minutes=timeout_minutes))
        _OWNED = True
    return DistInfo(rank, world, local)


def shutdown() -> None:
    """Tear down the process group ``init`` created (one created by the caller stays)."""
    global _OWNED
    if _OWNED and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _OWNED = False


def lost_peers(ex: BaseException) -> bool:
    """Whether ``ex`` is a collective that failed because another rank died, hung past the
    timeout, or the network between them broke (not a fault of this rank's own work)."""
    dist_error = getattr(dist, "DistError", None)  # torch ≥ 2.1: DistBackendError, DistNetworkError, ...
    if dist_error is not None and isinstance(ex, dist_error):
        return True
    text = str(ex)
    return isinstance(ex, RuntimeError) and any(
        sign in text for sign in ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "timed out", "Timed out", "Socket Timeout"))


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
    """Average the gradients over ranks with one flattened all-reduce after the backward
    (``hardware.grad_sync=flat``; the default is DDP's overlapped buckets, ``wrap_step``)."""
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


class TrainingStep(nn.Module):
    """A method's training step as one ``forward(batch) -> {"loss": ..., ...}`` over ``model``.

    DDP hooks the gradients of the parameters of the module it wraps and expects one forward
    per backward; the methods' steps call several sub-networks (and collectives) in their own
    order, so the whole step is that forward. ``model`` is registered as a child, so the
    parameters DDP sees are exactly the ones the optimiser updates."""

    def __init__(self, model: nn.Module, step: Callable[[Any], dict[str, torch.Tensor]]) -> None:
        super().__init__()
        self.model = model
        self._step = step

    def forward(self, batch: Any) -> dict[str, torch.Tensor]:
        return self._step(batch)


def wrap_step(model: nn.Module, step: Callable[[Any], dict[str, torch.Tensor]], device: torch.device, grad_sync: str = "ddp",
              find_unused_parameters: bool = False) -> Callable[[Any], dict[str, torch.Tensor]]:
    """The callable the engine runs each step: ``step`` itself on one process or with
    ``grad_sync="flat"``; under torchrun with ``"ddp"``, ``step`` inside torch's
    DistributedDataParallel (bucketed gradient all-reduce overlapped with the backward).

    Buffers are not re-broadcast at every forward (``broadcast_buffers=False``): every rank
    keeps its own BatchNorm statistics, as per-GPU BatchNorm does (SyncBatchNorm, where
    configured, shares them), and the methods' queues are kept equal by their own gathers."""
    if grad_sync not in GRAD_SYNCS:
        raise ConfigError("hardware.grad_sync", f"{grad_sync!r} is not one of {', '.join(GRAD_SYNCS)}")
    if not _active() or grad_sync == "flat":
        return step
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    # newer torch renames the switch (and still syncs buffers once at construction, as wanted:
    # every rank starts from rank 0's weights and statistics)
    renamed = "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    no_buffer_sync = {"forward_sync_buffers": False} if renamed else {"broadcast_buffers": False}
    return DistributedDataParallel(
        TrainingStep(model, step),
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=find_unused_parameters,
        gradient_as_bucket_view=True,  # gradients live in the buckets: no copy in or out
        **no_buffer_sync,
    )


def broadcast_parameters(module: nn.Module, src: int = 0) -> None:
    """Start every rank from rank ``src``'s weights and buffers."""
    if not _active():
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=src)
