"""ImageNet-Dog: the ImageNet train images of 15 dog breeds, as in the clustering literature
(DAC, CC), read from an ImageNet train folder tree and resized to ``image_size``².

Decoding ~19,500 JPEGs takes minutes, so the decoded array is cached under the root in
``.clusterbench_cache/imagenet_dog_<size>.npz``, keyed by a hash of the file list (relative
paths and sizes): adding, removing or replacing an image rebuilds it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from clusterbench.data.dataset import ImageDataset, check_split
from clusterbench.data.files import corrupt, data_root, first_line
from clusterbench.errors import ConfigError, DatasetError

log = logging.getLogger(__name__)

# (wnid, name) in label order: the 15 breeds of DAC / CC's ImageNet-Dog
BREEDS = [
    ("n02085936", "Maltese"),
    ("n02086646", "Blenheim spaniel"),
    ("n02088238", "basset"),
    ("n02091467", "Norwegian elkhound"),
    ("n02097130", "giant schnauzer"),
    ("n02099601", "golden retriever"),
    ("n02101388", "Brittany spaniel"),
    ("n02101556", "clumber"),
    ("n02102177", "Welsh springer spaniel"),
    ("n02105056", "groenendael"),
    ("n02105412", "kelpie"),
    ("n02105855", "Shetland sheepdog"),
    ("n02107142", "Doberman"),
    ("n02110958", "pug"),
    ("n02112137", "chow"),
]
WNIDS = [w for w, _ in BREEDS]
BILINEAR = getattr(Image, "Resampling", Image).BILINEAR  # Pillow < 9.1 has no Resampling
SUFFIXES = {".jpeg", ".jpg", ".png"}
CACHE_DIR = ".clusterbench_cache"
# Bump when decoding changes (resampling, colour conversion), so old caches are rebuilt.
CACHE_VERSION = "1:rgb:bilinear-antialias"
HINT = (
    "ImageNet cannot be downloaded automatically: get the ILSVRC2012 train images from image-net.org "
    "and set dataset.root to the folder holding the wnid folders (or its parent holding train/)"
)


def find_images(base: Path) -> tuple[Path, list[Path], np.ndarray]:
    """The folder holding the wnid folders, the image files (by breed, then file name) and
    their labels. Either ``<root>/<wnid>/`` or ``<root>/train/<wnid>/`` is accepted."""
    for folder in (base, base / "train"):
        present = [w for w in WNIDS if (folder / w).is_dir()]
        if present:
            break
    else:
        raise DatasetError(f"imagenet_dog images not found under {base} (expected folders {', '.join(WNIDS)}, or the same under train/); {HINT}")
    missing = [w for w in WNIDS if w not in present]
    if missing:
        raise DatasetError(f"imagenet_dog breed folders missing under {folder} (expected {', '.join(missing)}); {HINT}")
    paths, labels = [], []
    for label, wnid in enumerate(WNIDS):
        try:
            files = sorted(p for p in (folder / wnid).iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
        except OSError as ex:
            raise DatasetError(f"cannot list {folder / wnid}: {ex.strerror or first_line(ex)}; check that it is readable") from ex
        if not files:
            raise DatasetError(f"imagenet_dog folder {folder / wnid} holds no .JPEG/.jpg/.png images; {HINT}")
        paths += files
        labels += [label] * len(files)
    return folder, paths, np.asarray(labels, dtype=np.int64)


def list_key(folder: Path, paths: list[Path], image_size: int) -> str:
    """A hash of everything the decoded array depends on: the relative paths and sizes of
    the images, the output size and the decoding version."""
    digest = hashlib.sha256(f"{CACHE_VERSION}\n{image_size}\n".encode())
    for path in paths:
        digest.update(f"{path.relative_to(folder).as_posix()}\t{path.stat().st_size}\n".encode())
    return digest.hexdigest()


def decode(path: Path, image_size: int) -> np.ndarray:
    """One image as 3×S×S uint8: RGB, resized straight to S×S with bilinear filtering
    (PIL antialiases when shrinking), as CC's ``Resize((s, s))`` on PIL images does."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB").resize((image_size, image_size), BILINEAR)
            return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)  # H×W×C -> C×H×W
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as ex:
        raise corrupt(path, f"not a readable image ({type(ex).__name__}: {first_line(ex)})", fix="replace or delete it") from ex


def decode_all(paths: list[Path], image_size: int) -> np.ndarray:
    """All images as N×3×S×S, decoded on a few threads (PIL releases the GIL while decoding
    and resizing) with a progress bar; the order is the order of ``paths``."""
    images = np.empty((len(paths), 3, image_size, image_size), dtype=np.uint8)
    pool = ThreadPoolExecutor(min(8, os.cpu_count() or 1))
    try:
        decoded = pool.map(lambda p: decode(p, image_size), paths)
        for i, image in enumerate(tqdm(decoded, total=len(paths), desc="decoding imagenet_dog", unit="img")):
            images[i] = image
    finally:
        # on a corrupt file (or Ctrl-C) drop the queued images instead of decoding them all
        pool.shutdown(wait=True, cancel_futures=True)
    return images


def read_cache(path: Path, key: str, count: int) -> Optional[np.ndarray]:
    """The cached images if the cache exists and was built from the same file list."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as cache:
            if str(cache["key"]) != key:
                log.info("imagenet_dog: the image files changed since %s was written; decoding again", path)
                return None
            images = cache["images"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as ex:
        log.warning("imagenet_dog: ignoring unreadable cache %s (%s); decoding again", path, first_line(ex))
        return None
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) != count:
        log.warning("imagenet_dog: ignoring cache %s with unexpected shape %s; decoding again", path, images.shape)
        return None
    return images


def write_cache(path: Path, key: str, images: np.ndarray) -> None:
    """Write the cache atomically (a temporary file in the same folder, then a rename), so
    an interrupted run or a concurrent reader never sees half a file. A read-only root just
    means no cache."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.stem + ".", suffix=".tmp", delete=False) as f:
            tmp = f.name
            np.savez(f, images=images, key=np.asarray(key))
        os.replace(tmp, path)
    except OSError as ex:
        log.warning("imagenet_dog: cannot write the cache %s (%s); images will be decoded again next time", path, first_line(ex))
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def load_imagenet_dog(root: str, split: str = "all", download: bool = False, image_size: int = 96) -> ImageDataset:
    """The ≈19,500 ImageNet train images of the 15 breeds as N×3×S×S uint8.

    Only ImageNet's train images are used, so ``all`` and ``train`` are the same set and
    there is no ``test``. The first load decodes every file; later loads read the cache.
    """
    check_split(split, available=("train",))
    base = data_root(root)
    if download:
        raise DatasetError(
            f"imagenet_dog: ImageNet cannot be downloaded automatically; set dataset.download=false, get the ILSVRC2012 "
            f"train images from image-net.org and put the 15 dog wnid folders under {base} (or {base / 'train'})"
        )
    if image_size < 1:
        raise ConfigError("dataset.image_size", f"{image_size} is not a positive size in pixels; use e.g. 96")
    folder, paths, labels = find_images(base)
    key = list_key(folder, paths, image_size)
    cache = base / CACHE_DIR / f"imagenet_dog_{image_size}.npz"
    images = read_cache(cache, key, len(paths))
    if images is None:
        log.info("imagenet_dog: decoding %d images from %s (once; cached in %s)", len(paths), folder, cache)
        images = decode_all(paths, image_size)
        write_cache(cache, key, images)
    data = ImageDataset("imagenet_dog", torch.from_numpy(images), torch.from_numpy(labels), [n for _, n in BREEDS], split)
    data.info["source"] = str(folder)
    return data
