"""Writers of tiny dataset files in the real on-disk formats, for the loader tests.

Each writer lays files out as torchvision does under a root folder and returns the arrays it
wrote (images as N×C×H×W uint8, labels 0-based), so tests can check an exact round trip.
"""

from __future__ import annotations

import gzip
import io
import pickle
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image

# --- MNIST: IDX ---------------------------------------------------------------------------


def idx_bytes(array: np.ndarray, magic: Optional[int] = None) -> bytes:
    """IDX: big-endian magic (0, 0, type 0x08 = uint8, ndim), one big-endian uint32 per
    dimension, then the uint8 data row-major."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = (0x08 << 8 | array.ndim) if magic is None else magic
    header = np.asarray([magic, *array.shape], dtype=">u4").tobytes()
    return header + array.tobytes()


def write_idx(path: Path, array: np.ndarray, magic: Optional[int] = None, gz: bool = False) -> Path:
    data = idx_bytes(array, magic)
    path = path.with_name(path.name + ".gz") if gz else path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_mnist(root: Path, n_train: int = 6, n_test: int = 4, gz: bool = False, seed: int = 0) -> dict:
    """``root/MNIST/raw/`` with the four IDX files; returns {"train": (x, y), "test": (x, y)}
    with x of shape N×1×28×28."""
    gen = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        x = gen.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = gen.integers(0, 10, size=n).astype(np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", x, gz=gz)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", y, gz=gz)
        out[split] = (x[:, None], y.astype(np.int64))
    return out


# --- CIFAR: Python-2 protocol-2 pickles ---------------------------------------------------


class Py2Pickler(pickle._Pickler):
    """Writes pickles as Python 2 wrote the CIFAR files: every string (str or bytes) as a
    py2 ``str`` (SHORT_BINSTRING / BINSTRING opcodes), so that ``encoding="bytes"`` reads
    them back as bytes, and numpy's globals under their numpy-1 name ``numpy.core``."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else bytes(obj)
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + len(data).to_bytes(4, "little") + data)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str

    def save_global(self, obj, name=None) -> None:
        module = obj.__module__.replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode("ascii"))
        self.memoize(obj)


def py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def write_pickle(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(py2_pickle(obj))
    return path


def cifar_rows(images: np.ndarray) -> np.ndarray:
    """N×3×32×32 -> N×3072: per image the red plane, then green, then blue, row-major."""
    return images.reshape(len(images), 3072)


def write_cifar10(root: Path, per_batch: int = 3, n_test: int = 4, seed: int = 0) -> dict:
    """``root/cifar-10-batches-py/`` with data_batch_1..5, test_batch and batches.meta."""
    gen = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    write_pickle(folder / "batches.meta", {"num_cases_per_batch": per_batch, "label_names": names, "num_vis": 3072})
    out = {"train": [], "test": []}
    for file, label, n, split in [(f"data_batch_{i}", f"training batch {i} of 5", per_batch, "train") for i in range(1, 6)] + [
        ("test_batch", "testing batch 1 of 1", n_test, "test")
    ]:
        x = gen.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
        y = [int(v) for v in gen.integers(0, 10, size=n)]
        write_pickle(folder / file, {"batch_label": label, "labels": y, "data": cifar_rows(x), "filenames": [f"{i}_x.png" for i in range(n)]})
        out[split].append((x, np.asarray(y, dtype=np.int64)))
    return {s: (np.concatenate([b[0] for b in v]), np.concatenate([b[1] for b in v])) for s, v in out.items()}


def write_cifar100(root: Path, n_train: int = 5, n_test: int = 3, seed: int = 0) -> dict:
    """``root/cifar-100-python/`` with train, test and meta; returns
    {"train": (x, fine, coarse), "test": (x, fine, coarse)}."""
    gen = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    write_pickle(folder / "meta", {"fine_label_names": [f"fine{i}" for i in range(100)], "coarse_label_names": [f"coarse{i}" for i in range(20)]})
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = gen.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
        fine = [int(v) for v in gen.integers(0, 100, size=n)]
        coarse = [v // 5 for v in fine]
        write_pickle(folder / split, {"filenames": [f"{i}.png" for i in range(n)], "batch_label": f"{split} batch", "fine_labels": fine, "coarse_labels": coarse, "data": cifar_rows(x)})
        out[split] = (x, np.asarray(fine, dtype=np.int64), np.asarray(coarse, dtype=np.int64))
    return out


# --- STL-10: raw column-major binaries ------------------------------------------------------

STL10_NAMES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]


def stl10_bytes(images: np.ndarray) -> bytes:
    """N×3×96×96 -> the file's bytes: each channel plane written column-major (MATLAB order)."""
    return np.ascontiguousarray(images.transpose(0, 1, 3, 2)).tobytes()


def write_stl10(root: Path, n_train: int = 3, n_test: int = 2, n_unlabeled: int = 0, seed: int = 0) -> dict:
    """``root/stl10_binary/`` with {train,test}_{X,y}.bin, class_names.txt and, when
    ``n_unlabeled``, unlabeled_X.bin. Labels are stored 1..10 and returned 0-based."""
    gen = np.random.default_rng(seed)
    folder = root / "stl10_binary"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "class_names.txt").write_text("\n".join(STL10_NAMES) + "\n")
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = gen.integers(0, 256, size=(n, 3, 96, 96), dtype=np.uint8)
        y = gen.integers(0, 10, size=n).astype(np.int64)
        (folder / f"{split}_X.bin").write_bytes(stl10_bytes(x))
        (folder / f"{split}_y.bin").write_bytes((y + 1).astype(np.uint8).tobytes())
        out[split] = (x, y)
    if n_unlabeled:
        x = gen.integers(0, 256, size=(n_unlabeled, 3, 96, 96), dtype=np.uint8)
        (folder / "unlabeled_X.bin").write_bytes(stl10_bytes(x))
        out["unlabeled"] = x
    return out


# --- ImageNet-Dog: a train folder tree of small images -----------------------------------

DOG_WNIDS = [
    "n02085936", "n02086646", "n02088238", "n02091467", "n02097130", "n02099601", "n02101388", "n02101556",
    "n02102177", "n02105056", "n02105412", "n02105855", "n02107142", "n02110958", "n02112137",
]


def dog_image(label: int, index: int, size: tuple[int, int] = (16, 12)) -> Image.Image:
    """A W×H RGB image whose top half is a class colour and bottom half its inverse, so a
    swap of height and width (or a flip) is visible after resizing."""
    w, h = size
    colour = np.asarray([(label * 17) % 256, 255 - label * 13, (index * 40 + 30) % 256], dtype=np.uint8)
    pixels = np.empty((h, w, 3), dtype=np.uint8)
    pixels[: h // 2] = colour
    pixels[h // 2 :] = 255 - colour
    return Image.fromarray(pixels)


def write_imagenet_dog(root: Path, per_class: int = 2, train_folder: bool = False, wnids: Sequence[str] = DOG_WNIDS) -> list[Path]:
    """``root/<wnid>/`` (or ``root/train/<wnid>/``) of small images with mixed extensions
    (.JPEG, .jpg, .png), plus a stray non-image file the loader must skip. Returns the image
    paths in the loader's order (breed, then file name)."""
    base = root / "train" if train_folder else root
    paths = []
    for label, wnid in enumerate(wnids):
        folder = base / wnid
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "notes.txt").write_text("not an image")
        for i in range(per_class):
            ext, fmt = [(".JPEG", "JPEG"), (".jpg", "JPEG"), (".png", "PNG")][i % 3]
            path = folder / f"{wnid}_{i}{ext}"
            dog_image(label, i).save(path, format=fmt, quality=95)
            paths.append(path)
    return sorted(paths, key=lambda p: (wnids.index(p.parent.name), p.name))
