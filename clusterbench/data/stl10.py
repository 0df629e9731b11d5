"""STL-10 from the binary files in torchvision's layout, ``<root>/stl10_binary/``.

``*_X.bin`` files are raw uint8 images back to back with no header, 3·96·96 = 27,648 bytes
each: the red plane, then green, then blue, each plane stored column-major (MATLAB order),
so the bytes read as N×C×W×H and the last two axes are swapped to get N×C×H×W.
``*_y.bin`` files hold one uint8 label per image, 1..10 (MATLAB's 1-based classes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from clusterbench.data.dataset import ImageDataset, check_split, join_splits
from clusterbench.data.files import corrupt, data_root, ensure_files, fetch_hint, label_array, map_array, read_array

FOLDER = "stl10_binary"
SIDE = 96
IMAGE_BYTES = 3 * SIDE * SIDE
FILES = {"train": ("train_X.bin", "train_y.bin"), "test": ("test_X.bin", "test_y.bin")}
UNLABELED = "unlabeled_X.bin"
CLASS_NAMES = "class_names.txt"


def read_images(path: Path) -> torch.Tensor:
    """An ``*_X.bin`` file as a contiguous N×3×96×96 uint8 tensor.

    The file is memory-mapped and copied once, by torch's parallel transpose, straight into
    C×H×W order: no intermediate copy of the (up to 2.6 GB) file.
    """
    raw = map_array(path)
    if len(raw) == 0 or len(raw) % IMAGE_BYTES:
        raise corrupt(path, f"size {len(raw)} bytes is not a positive multiple of {IMAGE_BYTES} (one 3×{SIDE}×{SIDE} image)")
    stored = torch.from_numpy(raw).view(-1, 3, SIDE, SIDE)  # N×C×W×H: planes are column-major
    return stored.transpose(2, 3).contiguous()


def read_split(files: dict[str, Path], split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One split's images and 0-based labels, checked to number one per image."""
    image_name, label_name = FILES[split]
    images = read_images(files[image_name])
    labels = label_array(files[label_name], read_array(files[label_name]), len(images), 10, offset=1)
    return images, torch.from_numpy(labels)


def read_class_names(path: Path) -> list[str]:
    """The ten names in ``class_names.txt``, one a line, in label order."""
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as ex:
        raise corrupt(path, f"not a readable text file ({type(ex).__name__})") from ex
    if len(names) != 10:
        raise corrupt(path, f"expected 10 class names, found {len(names)}")
    return names


def load_stl10(root: str, split: str = "all", download: bool = False, unlabeled: bool = False) -> ImageDataset:
    """STL-10's 13,000 labelled 3×96×96 images (train 5k + test 8k); ``split=all`` is train
    then test.

    ``unlabeled`` adds the 100,000 unlabeled images as training-only extras
    (``ImageDataset.unlabeled``), whatever the split: methods may fit on them but they are
    never predicted or scored. They are read only when asked for (2.6 GB).
    """
    check_split(split)
    splits = ["train", "test"] if split == "all" else [split]
    base = data_root(root)
    folder = base / FOLDER
    needed = [name for s in splits for name in FILES[s]] + [CLASS_NAMES] + ([UNLABELED] if unlabeled else [])

    def fetch() -> None:
        import torchvision.datasets

        torchvision.datasets.STL10(str(base), split="train", download=True)

    files = ensure_files(base, folder, needed, "stl10", fetch_hint(FOLDER), download, fetch)
    class_names = read_class_names(files[CLASS_NAMES])
    parts = {s: read_split(files, s) for s in splits}
    extra: Optional[torch.Tensor] = read_images(files[UNLABELED]) if unlabeled else None
    return join_splits("stl10", parts, split, class_names, unlabeled=extra)
