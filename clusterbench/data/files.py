"""What the file-based loaders share: finding their files, reading them with clear errors,
and fetching them with torchvision's downloaders.

Every failure here is a :class:`DatasetError` with a one-line message that names the path
and says what to do, because the CLI prints it as the whole error report.
"""

from __future__ import annotations

import gzip
import os
import pickle
import zlib
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from clusterbench.errors import DatasetError


def data_root(root: str | os.PathLike) -> Path:
    """The absolute dataset root, so messages name a path the user can find (Hydra may run
    the job from another working directory than the one the relative path was meant for)."""
    return Path(os.path.abspath(os.path.expanduser(os.fspath(root))))


def first_line(ex: BaseException) -> str:
    """An exception as one short line (its type when it has no text), for one-line errors."""
    lines = str(ex).strip().splitlines()
    return lines[0].strip() if lines else type(ex).__name__


def fetch_hint(folder: str) -> str:
    """The usual fix for missing files of a dataset torchvision can download."""
    return f"set dataset.root to the folder holding {folder}/ or add dataset.download=true when online"


def missing_files(folder: Path, names: Sequence[str], suffixes: Sequence[str] = ("",)) -> list[str]:
    """The names in ``names`` with no file ``name + suffix`` (for any suffix) in ``folder``."""
    return [n for n in names if not any((folder / (n + s)).is_file() for s in suffixes)]


def require_files(
    folder: Path, names: Sequence[str], dataset: str, hint: str, suffixes: Sequence[str] = ("",)
) -> dict[str, Path]:
    """The path of each file in ``names`` (the first ``name + suffix`` that exists), or the
    one-line missing-files error naming the folder, the files it lacks and the fix."""
    missing = missing_files(folder, names, suffixes)
    if missing:
        raise DatasetError(f"{dataset} files not found under {folder} (expected {', '.join(missing)}); {hint}")
    return {n: next(folder / (n + s) for s in suffixes if (folder / (n + s)).is_file()) for n in names}


def download_with_torchvision(dataset: str, root: Path, fetch: Callable[[], Any]) -> None:
    """Run a torchvision downloader (``fetch``) that fills ``root`` in torchvision's layout.

    Any failure (no network, a proxy, a bad archive, a full disk) becomes one DatasetError:
    the CLI shows it as a single line, and the fix is the same whatever the cause.
    """
    try:
        fetch()
    except Exception as ex:  # noqa: BLE001 - every download failure has the same remedy
        raise DatasetError(
            f"{dataset} download into {root} failed ({type(ex).__name__}: {first_line(ex)}); "
            f"check the network, or place the files there by hand and set dataset.download=false"
        ) from ex


def ensure_files(
    root: Path,
    folder: Path,
    names: Sequence[str],
    dataset: str,
    hint: str,
    download: bool,
    fetch: Callable[[], Any],
    suffixes: Sequence[str] = ("",),
) -> dict[str, Path]:
    """The files ``names`` in ``folder``, downloaded into ``root`` first when some are missing and
    ``download`` is set. Present files are never re-downloaded: torchvision would check
    their md5, and re-packed but exact copies (like the shared CIFAR-10) would fail it."""
    if download and missing_files(folder, names, suffixes):
        download_with_torchvision(dataset, root, fetch)
    return require_files(folder, names, dataset, hint, suffixes)


def corrupt(path: Path, detail: str, fix: str = "delete it and download again") -> DatasetError:
    """The error for a file that exists but does not hold what its format promises."""
    return DatasetError(f"corrupt dataset file {path}: {detail}; {fix}")


def unreadable(path: Path, ex: OSError) -> DatasetError:
    """The error for a file the OS will not give us (permissions, I/O error)."""
    return DatasetError(f"cannot read dataset file {path}: {ex.strerror or first_line(ex)}; check that it is readable")


def read_array(path: Path) -> np.ndarray:
    """The bytes of ``path`` as a writable uint8 array; ``.gz`` files are decompressed.

    Writable so that ``torch.from_numpy`` can share the memory without a copy or a warning.
    """
    try:
        if path.name.endswith(".gz"):
            try:
                return np.frombuffer(bytearray(gzip.decompress(path.read_bytes())), dtype=np.uint8)
            except (EOFError, gzip.BadGzipFile, zlib.error) as ex:
                raise corrupt(path, f"not a complete gzip file ({first_line(ex)})") from ex
        return np.fromfile(path, dtype=np.uint8)
    except OSError as ex:
        raise unreadable(path, ex) from ex


def map_array(path: Path) -> np.ndarray:
    """``path`` as a copy-on-write uint8 memory map: pages are read only when used, so a
    2.6 GB file costs nothing until its images are copied out (and the array is writable)."""
    try:
        if path.stat().st_size == 0:
            return np.zeros(0, dtype=np.uint8)
        return np.memmap(path, dtype=np.uint8, mode="c")
    except OSError as ex:
        raise unreadable(path, ex) from ex


# The only globals a CIFAR pickle may name: numpy's array reconstruction (under its numpy-1
# and numpy-2 module names) and the codec Python 3 uses for bytes in protocol-2 pickles.
# Anything else could run arbitrary code while loading a downloaded file, so it is refused.
_PICKLE_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which no dataset pickle contains")
        return super().find_class(module, name)


def load_pickle(path: Path) -> dict:
    """A Python-2-era dataset pickle (CIFAR) as a dict with ``str`` keys.

    The files were written by Python 2, so they are read with ``encoding="bytes"`` (keys and
    names come back as bytes: decoding them as text could garble the pixel strings of old
    numpy arrays); keys are then decoded to ``str`` for the callers.
    """
    try:
        with open(path, "rb") as f:
            obj = _DataUnpickler(f, encoding="bytes").load()
    except OSError as ex:
        raise unreadable(path, ex) from ex
    except Exception as ex:  # noqa: BLE001 - truncated or garbage pickles raise many types
        raise corrupt(path, f"not a readable pickle ({type(ex).__name__}: {first_line(ex)})") from ex
    if not isinstance(obj, dict):
        raise corrupt(path, f"expected a pickled dict, found {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def require_keys(path: Path, obj: dict, keys: Sequence[str]) -> None:
    """Fail with the file's name if a pickled dict lacks any of ``keys``."""
    missing = [k for k in keys if k not in obj]
    if missing:
        have = ", ".join(sorted(map(str, obj))) or "none"
        raise corrupt(path, f"missing keys {', '.join(missing)} (has {have})")


def label_array(path: Path, values: Any, count: int, num_classes: int, offset: int = 0, what: str = "labels") -> np.ndarray:
    """``values`` as int64 labels in [0, num_classes) after subtracting ``offset``, checked to
    number ``count`` (one per image) and to lie in range."""
    try:
        labels = np.asarray(values, dtype=np.int64).reshape(-1) - offset
    except (TypeError, ValueError) as ex:
        raise corrupt(path, f"{what} are not integers ({first_line(ex)})") from ex
    if len(labels) != count:
        raise corrupt(path, f"{count} images but {len(labels)} {what}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        bad = int(labels.min() if labels.min() < 0 else labels.max()) + offset
        raise corrupt(path, f"{what} must lie in {offset}..{num_classes - 1 + offset}, found {bad}")
    return labels


def decode_names(path: Path, values: Any, count: Optional[int] = None, what: str = "class names") -> list[str]:
    """Class names stored as bytes (Python 2 strings) or str, checked to number ``count``."""
    if not isinstance(values, (list, tuple)):
        raise corrupt(path, f"{what} are a {type(values).__name__}, not a list")
    names = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values]
    if count is not None and len(names) != count:
        raise corrupt(path, f"expected {count} {what}, found {len(names)}")
    return names
