"""MNIST from the four IDX files in torchvision's layout, ``<root>/MNIST/raw/``.

The IDX files are parsed here with numpy (not through torchvision's dataset class) so that
loading needs neither md5 checks nor torchvision's processed caches, and every way a file
can be wrong gets a one-line error naming it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from clusterbench.data.dataset import ImageDataset, check_split, join_splits
from clusterbench.data.files import corrupt, data_root, ensure_files, fetch_hint, read_array

# split -> (images file, labels file), as torchvision and LeCun's site name them
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049  # 0x00000803 / 0x00000801: uint8 data, 3 / 1 dims
SIDE = 28


def read_idx(path: Path, magic: int) -> np.ndarray:
    """An IDX file's uint8 array, shaped by its header.

    Layout (all big-endian): a 4-byte magic number — two zero bytes, a type code (0x08 =
    unsigned byte) and the number of dimensions — then one uint32 per dimension, then the
    data, row-major. The file size must be exactly header + product of the dimensions.
    """
    raw = read_array(path)
    if len(raw) < 4:
        raise corrupt(path, f"expected an IDX header, found {len(raw)} bytes")
    found = int(raw[:4].view(">u4")[0])
    if found != magic:
        raise corrupt(path, f"magic number {found}, expected {magic} (not an IDX {'image' if magic == IMAGES_MAGIC else 'label'} file)")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise corrupt(path, f"expected {header} header bytes, found {len(raw)}")
    dims = tuple(int(d) for d in raw[4:header].view(">u4"))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        raise corrupt(path, f"expected {expected} bytes for dims {'×'.join(map(str, dims))}, found {len(raw)}")
    return raw[header:].reshape(dims)


def read_split(files: dict[str, Path], split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One split's N×1×28×28 images and N labels, checked to agree with each other."""
    image_name, label_name = FILES[split]
    images = read_idx(files[image_name], IMAGES_MAGIC)
    if images.shape[1:] != (SIDE, SIDE):
        raise corrupt(files[image_name], f"images are {'×'.join(map(str, images.shape[1:]))}, expected {SIDE}×{SIDE}")
    labels = read_idx(files[label_name], LABELS_MAGIC)
    if len(labels) != len(images):
        raise corrupt(files[label_name], f"{len(labels)} labels for the {len(images)} images in {files[image_name].name}")
    if len(labels) and labels.max() > 9:
        raise corrupt(files[label_name], f"labels must lie in 0..9, found {int(labels.max())}")
    return torch.from_numpy(images[:, None]), torch.from_numpy(labels.astype(np.int64))


def load_mnist(root: str, split: str = "all", download: bool = False) -> ImageDataset:
    """MNIST's 70,000 (train 60k + test 10k) 1×28×28 digits; ``split=all`` is train then test.

    Only the files the split needs are read. A ``.gz`` copy stands in for a missing
    uncompressed file. With ``download``, torchvision's downloader fetches missing files.
    """
    check_split(split)
    splits = ["train", "test"] if split == "all" else [split]
    base = data_root(root)
    folder = base / "MNIST" / "raw"
    names = [name for s in splits for name in FILES[s]]

    def fetch() -> None:
        import torchvision.datasets

        torchvision.datasets.MNIST(str(base), train=True, download=True)

    files = ensure_files(base, folder, names, "mnist", fetch_hint("MNIST"), download, fetch, suffixes=("", ".gz"))
    parts = {s: read_split(files, s) for s in splits}
    return join_splits("mnist", parts, split, [str(i) for i in range(10)])
