"""Where the training images live while a deep method trains (``data.placement``).

``device``: the uint8 images are copied to the device once, and each batch is an index into
them (the fast path: CIFAR-10 is 184 MB, nothing beside a GPU's memory). ``host``: they stay in
host memory, possibly a memory-mapped decode cache larger than RAM, and each batch is gathered
into a pinned staging buffer and copied to the device asynchronously, one batch ahead, on a
side stream, while the previous step computes. The batches, and so the views and the whole
run, are the same either way. ``auto`` picks ``device`` when the images take at most
``DEVICE_SHARE`` of the device's free memory, else ``host``; on a CPU the two are one memory,
and ``auto`` is ``device``.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from clusterbench.errors import ConfigError

PLACEMENTS = ("auto", "device", "host")
# the rest of the device's memory is for the networks, activations and the E-steps' features
DEVICE_SHARE = 0.5


def resolve_placement(placement: str, nbytes: int, device: torch.device) -> str:
    """``device`` or ``host`` for ``data.placement`` and images of ``nbytes`` bytes."""
    placement = str(getattr(placement, "value", placement))
    if placement not in PLACEMENTS:
        raise ConfigError("data.placement", f"{placement!r} is not one of {', '.join(PLACEMENTS)}")
    if placement != "auto":
        return placement
    if device.type != "cuda":
        return "device"
    free, _ = torch.cuda.mem_get_info(device)
    return "device" if nbytes <= DEVICE_SHARE * free else "host"


class ImageStore:
    """The training images (N×C×H×W uint8) where ``placement`` puts them, and batches of them on
    the device: ``gather(rows)`` now, or ``feed(rows_of, count)`` one batch ahead."""

    def __init__(self, images: torch.Tensor, device: torch.device, placement: str = "auto") -> None:
        self.device = device
        self.placement = resolve_placement(placement, images.numel() * images.element_size(), device)
        self.images = images.to(device) if self.placement == "device" else images  # N×C×H×W uint8
        self.shape = tuple(images.shape)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def overlapped(self) -> bool:
        """Batches are copied ahead on a side stream (host placement on a GPU)."""
        return self.placement == "host" and self.device.type == "cuda"

    def gather(self, rows: torch.Tensor) -> torch.Tensor:
        """The images at ``rows`` (on any device), on the device, B×C×H×W uint8."""
        return self.images[rows.to(self.images.device)].to(self.device, non_blocking=True)

    def sample(self, stride: int) -> torch.Tensor:
        """Every ``stride``-th image, where the images are (per-channel statistics)."""
        return self.images[::stride]

    def feed(self, rows_of: Callable[[int], torch.Tensor], count: int) -> "BatchFeed":
        """Batches ``0 … count−1`` (``rows_of(i)``: batch i's rows), in order."""
        return BatchFeed(self, rows_of, count)


class BatchFeed:
    """Batch i on the device, batch i + 1 already on its way (host placement on a GPU); in
    every other case simply ``store.gather(rows_of(i))``.

    The copy ahead: the rows are gathered on the host into one of two pinned buffers, copied
    with ``non_blocking`` on a side stream, and the compute stream waits on the copy's event
    before using it; a pinned buffer is refilled only after its previous copy finished."""

    def __init__(self, store: ImageStore, rows_of: Callable[[int], torch.Tensor], count: int) -> None:
        self.store, self.rows_of, self.count = store, rows_of, count
        self._pending: dict[int, tuple[torch.Tensor, Optional[torch.cuda.Event]]] = {}
        if store.overlapped:
            self._stream = torch.cuda.Stream(store.device)
            self._pinned: list[Optional[torch.Tensor]] = [None, None]
            self._copied: list[Optional[torch.cuda.Event]] = [None, None]

    def _start(self, i: int) -> None:
        rows = self.rows_of(i).cpu()
        slot = i % 2
        done = self._copied[slot]
        if done is not None:
            done.synchronize()  # the copy out of this buffer (two batches ago) has finished
        buffer = self._pinned[slot]
        if buffer is None or buffer.shape[0] != len(rows):
            buffer = self._pinned[slot] = torch.empty((len(rows), *self.store.shape[1:]), dtype=torch.uint8).pin_memory()
        torch.index_select(self.store.images, 0, rows, out=buffer)
        with torch.cuda.stream(self._stream):
            x = buffer.to(self.store.device, non_blocking=True)
            event = torch.cuda.Event()
            event.record(self._stream)
        self._copied[slot] = event
        self._pending[i] = (x, event)

    def get(self, i: int) -> torch.Tensor:
        """Batch ``i`` on the device (B×C×H×W uint8)."""
        if not self.store.overlapped:
            return self.store.gather(self.rows_of(i))
        if i not in self._pending:
            self._start(i)
        x, event = self._pending.pop(i)
        current = torch.cuda.current_stream(self.store.device)
        current.wait_event(event)
        x.record_stream(current)  # the allocator must not hand x's memory to the side stream early
        if i + 1 < self.count:
            self._start(i + 1)  # overlaps with step i
        return x
