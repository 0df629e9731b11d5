"""``dataset=array``: images the user already holds as a NumPy array, in a ``.npy`` or ``.npz`` file.

``.npz`` keys: ``images`` (required), ``labels`` (optional, any integers, one per image) and
``names`` (optional, one string per image); a ``.npy`` file holds the images alone. Images
are N×H×W, N×H×W×C or N×C×H×W with C = 1 or 3, either uint8 (0–255) or float in [0, 1].
Files are read with ``allow_pickle=False``: a data file must never run code.
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from clusterbench.data.dataset import ImageDataset, check_split
from clusterbench.data.files import data_root, first_line
from clusterbench.errors import ConfigError, DatasetError

log = logging.getLogger(__name__)

KEYS = ("images", "labels", "names")
SAVE_HINT = "save it with np.savez(path, images=x, labels=y, names=n) or np.save(path, x)"


def _fail(path: Path, problem: str, fix: str) -> DatasetError:
    return DatasetError(f"array file {path}: {problem}; {fix}")


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a ``.npy`` (as ``images``) or ``.npz`` file, without unpickling anything."""
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise DatasetError(f"array file {path} {what}; set dataset.path=FILE to your .npy or .npz file")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return {"images": loaded}
        with loaded:
            arrays = {key: loaded[key] for key in loaded.files}
    except ValueError as ex:
        if "Object arrays" in str(ex):
            raise _fail(path, "it holds an object array (pickled Python objects)", "store numbers as numeric arrays and names as np.asarray(names, dtype=str)") from ex
        raise _fail(path, "not a .npy or .npz file", SAVE_HINT) from ex
    except (OSError, EOFError, zipfile.BadZipFile) as ex:
        raise _fail(path, f"not a readable .npy or .npz file ({type(ex).__name__}: {first_line(ex)})", SAVE_HINT) from ex
    unknown = sorted(set(arrays) - set(KEYS))
    if "images" not in arrays:
        raise _fail(path, f"no 'images' key (it has {', '.join(sorted(arrays)) or 'no arrays'})", SAVE_HINT)
    if unknown:
        log.warning("array: ignoring the keys %s of %s (read: %s)", ", ".join(unknown), path, ", ".join(KEYS))
    return arrays


def channels_first(path: Path, images: np.ndarray) -> np.ndarray:
    """``images`` as N×C×H×W: a 3-D array is greyscale; in a 4-D array the channel axis is
    the one of size 1 or 3, the last when both could be (NumPy and PIL's H×W×C convention)."""
    if images.ndim == 3:
        return images[:, None]
    if images.ndim != 4:
        raise _fail(path, f"images of shape {images.shape}: expected N×H×W, N×H×W×C or N×C×H×W", "reshape them so")
    last, first = images.shape[3] in (1, 3), images.shape[1] in (1, 3)
    if last:
        return images.transpose(0, 3, 1, 2)
    if first:
        return images
    raise _fail(path, f"images of shape {images.shape} have no channel axis of 1 or 3 (axis 1 or 3)", "store greyscale as N×H×W and colour as N×H×W×3 or N×3×H×W")


def to_uint8(path: Path, images: np.ndarray) -> np.ndarray:
    """uint8 as it is; float in [0, 1] scaled to 0–255 and rounded; anything else refused."""
    if images.dtype == np.uint8:
        return images
    if images.dtype.kind != "f":
        raise _fail(path, f"images are {images.dtype}", "store them as uint8 (0–255) or float in [0, 1]")
    if np.isnan(images).any():
        raise _fail(path, "images hold NaN values", "replace them (np.nan_to_num) before saving")
    low, high = float(images.min()), float(images.max())
    if low < 0 or high > 1:
        raise _fail(path, f"float images must lie in [0, 1], found {low:g}..{high:g}", "divide 0–255 data by 255, or store it as uint8")
    return np.rint(images * 255.0).astype(np.uint8)


def label_values(path: Path, values: np.ndarray, count: int) -> tuple[np.ndarray, list[str]]:
    """Integer labels of any values mapped to 0..K-1 in sorted order, and their original
    values as class names."""
    if values.ndim != 1 or len(values) != count:
        raise _fail(path, f"{count} images but labels of shape {values.shape}", "store one integer label per image")
    if values.dtype.kind not in "iu":
        raise _fail(path, f"labels are {values.dtype}, not integers", "store them as an integer array (np.asarray(y, dtype=np.int64))")
    classes, labels = np.unique(values, return_inverse=True)
    if len(classes) < 2:
        raise _fail(path, f"every label is {classes[0] if len(classes) else '(none)'}: one class leaves nothing to score against", "drop the labels key to cluster without labels")
    return labels.astype(np.int64).reshape(-1), [str(v) for v in classes.tolist()]


def image_names(path: Path, values: np.ndarray, count: int) -> list[str]:
    if values.ndim != 1 or len(values) != count:
        raise _fail(path, f"{count} images but names of shape {values.shape}", "store one name per image")
    if values.dtype.kind == "S":
        return [v.decode("utf-8", "replace") for v in values.tolist()]
    if values.dtype.kind != "U":
        raise _fail(path, f"names are {values.dtype}, not strings", "store them as np.asarray(names, dtype=str)")
    return values.tolist()


def load_array(path: Optional[str] = None, split: str = "all", download: bool = False, root: Optional[str] = None) -> ImageDataset:
    """The images (and labels and names, when the file has them) of a ``.npy``/``.npz`` file.

    One array is one set, so ``all`` and ``train`` are the same and there is no ``test``.
    """
    check_split(split, available=("train",))
    if root is not None:
        raise ConfigError("dataset.root", "not used by array, which reads one file; set dataset.path=FILE instead")
    if path is None:
        raise ConfigError("dataset.path", "set it to your .npy or .npz file of images (dataset.path=FILE)")
    if download:
        raise ConfigError("dataset.download", "your own images cannot be downloaded; set dataset.download=false")
    file = data_root(path)
    arrays = read_arrays(file)
    images = to_uint8(file, channels_first(file, arrays["images"]))
    count = len(images)
    if count == 0 or 0 in images.shape[2:]:
        raise _fail(file, f"images of shape {arrays['images'].shape} hold no pixels", "store at least one image")
    labels, class_names = label_values(file, arrays["labels"], count) if "labels" in arrays else (None, [])
    names = image_names(file, arrays["names"], count) if "names" in arrays else None
    data = ImageDataset(
        "array",
        torch.from_numpy(np.ascontiguousarray(images)),
        None if labels is None else torch.from_numpy(labels),
        class_names,
        split,
        names=names,
    )
    data.info["source"] = str(file)
    return data
