"""ImageNet-Dog: the ImageNet train images of 15 dog breeds, as in the clustering literature
(DAC, CC), read from an ImageNet train folder tree and resized to ``image_size``².

A folder dataset with a fixed class list: the breed folders are found by wnid, and decoding and
the cache (``.clusterbench_cache/imagenet_dog_<size>.npz`` under the root, rebuilt when an
image is added, removed or replaced) are the folder dataset's (clusterbench.data.images). The
default ``resize=stretch`` is CC's ``Resize((s, s))``, as this loader has always done.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image  # noqa: F401 - the decoder's PIL; tests patch Image.open through this module

from clusterbench.data.dataset import ImageDataset, check_split
from clusterbench.data.files import data_root
from clusterbench.data.images import DecodeOptions, ImageFile, describe_suffixes, find_image_files, load_images
from clusterbench.errors import ConfigError, DatasetError

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
HINT = (
    "ImageNet cannot be downloaded automatically: get the ILSVRC2012 train images from image-net.org "
    "and set dataset.root to the folder holding the wnid folders (or its parent holding train/)"
)


def find_images(base: Path) -> tuple[Path, list[ImageFile], np.ndarray]:
    """The folder holding the wnid folders, the image files (by breed, then path; named
    relative to ``base``) and their labels. Either ``<root>/<wnid>/`` or
    ``<root>/train/<wnid>/`` is accepted."""
    for folder in (base, base / "train"):
        present = [w for w in WNIDS if (folder / w).is_dir()]
        if present:
            break
    else:
        raise DatasetError(f"imagenet_dog images not found under {base} (expected folders {', '.join(WNIDS)}, or the same under train/); {HINT}")
    missing = [w for w in WNIDS if w not in present]
    if missing:
        raise DatasetError(f"imagenet_dog breed folders missing under {folder} (expected {', '.join(missing)}); {HINT}")
    files: list[ImageFile] = []
    labels: list[int] = []
    for label, wnid in enumerate(WNIDS):
        found = find_image_files(folder / wnid, base)
        if not found:
            raise DatasetError(f"imagenet_dog folder {folder / wnid} holds no images ({describe_suffixes()}); {HINT}")
        files += found
        labels += [label] * len(found)
    return folder, files, np.asarray(labels, dtype=np.int64)


def load_imagenet_dog(
    root: str, split: str = "all", download: bool = False, image_size: int = 96, resize: str = "stretch", skip_bad: bool = False
) -> ImageDataset:
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
    if image_size is None:
        raise ConfigError("dataset.image_size", "ImageNet images differ in size; use a size in pixels, e.g. 96")
    options = DecodeOptions.checked(image_size, resize, "3")
    folder, files, labels = find_images(base)
    cache_name = f"imagenet_dog_{image_size}" if resize == "stretch" else f"imagenet_dog_{image_size}_{resize}"
    decoded = load_images(base, files, options, cache_name, "imagenet_dog", skip_bad)
    data = ImageDataset(
        "imagenet_dog",
        torch.from_numpy(decoded.images),
        torch.from_numpy(labels[decoded.kept]),
        [n for _, n in BREEDS],
        split,
        names=[files[i].name for i in decoded.kept],
    )
    data.info.update(source=str(folder), skipped=len(decoded.bad))
    return data
