"""``dataset=folder``: a folder of the user's own images, with or without labels.

Layout (torchvision's ImageFolder): each immediate subfolder of the root is a class, named by
the folder, and holds its images at any depth; classes are numbered in sorted name order.
A flat folder (images directly in the root, no class folders) or ``labels=false`` gives an
unlabelled dataset: every image under the root, at any depth. Images both loose in the root
and in class folders are an error with labels on, because the loose ones would have no class.

Decoding and caching are shared with ImageNet-Dog (clusterbench.data.images).
"""

from __future__ import annotations

import logging
from typing import Optional, Sequence

import numpy as np
import torch

from clusterbench.data.dataset import ImageDataset, check_split
from clusterbench.data.files import data_root
from clusterbench.data.images import DecodeOptions, ImageFile, describe_suffixes, find_image_files, load_images
from clusterbench.errors import ConfigError, DatasetError

log = logging.getLogger(__name__)

OWN_IMAGES = "for your own images use dataset=folder dataset.root=PATH (or dataset=array dataset.path=FILE)"


def reject_root(root: Optional[str], dataset: str, why: str) -> None:
    """A dataset that reads no files refuses a ``dataset.root``: silently ignoring it would run
    the wrong data for someone who meant to point at their own images."""
    if root is not None:
        raise ConfigError("dataset.root", f"not used by {dataset} ({why}); {OWN_IMAGES}")


def class_layout(files: Sequence[ImageFile], base_name: str) -> tuple[list[ImageFile], Optional[np.ndarray], list[str]]:
    """Split the files under a root into (files, labels, class names) by the first path
    component; no subfolder with images means no labels (None, [])."""
    loose = [f for f in files if "/" not in f.name]
    in_folders = [f for f in files if "/" in f.name]
    if not in_folders:
        return list(files), None, []
    class_names = sorted({f.name.split("/", 1)[0] for f in in_folders})
    if loose:
        raise DatasetError(
            f"{len(loose)} images lie directly in {base_name} (e.g. {loose[0].name}) beside the class folders "
            f"{', '.join(class_names[:3])}{', ...' if len(class_names) > 3 else ''}; move them into a class folder, "
            f"or set dataset.labels=false to cluster every image without labels"
        )
    if len(class_names) == 1:
        raise DatasetError(
            f"{base_name} holds one class folder ({class_names[0]}), so there is nothing to score clusters against; "
            f"set dataset.labels=false to cluster its images without labels, or add a folder per class"
        )
    index = {name: i for i, name in enumerate(class_names)}
    labels = np.fromiter((index[f.name.split("/", 1)[0]] for f in in_folders), dtype=np.int64, count=len(in_folders))
    return in_folders, labels, class_names


def load_folder(
    root: Optional[str] = None,
    split: str = "all",
    download: bool = False,
    labels: bool = True,
    image_size: Optional[int] = None,
    resize: str = "crop",
    channels: str = "auto",
    skip_bad: bool = False,
) -> ImageDataset:
    """The images under ``root`` as N×C×S×S uint8 (``image_size`` S; null: the native size,
    which every image must share), labelled by class folder when there are class folders.

    A folder is one set of images, so ``all`` and ``train`` are the same and there is no
    ``test``. ``names`` holds each image's path relative to the root.
    """
    check_split(split, available=("train",))
    if root is None:
        raise ConfigError("dataset.root", "set it to the folder holding your images (dataset.root=PATH)")
    if download:
        raise ConfigError("dataset.download", "your own images cannot be downloaded; set dataset.download=false")
    options = DecodeOptions.checked(image_size, resize, channels)
    base = data_root(root)
    if not base.is_dir():
        what = "is not a folder" if base.exists() else "does not exist"
        raise DatasetError(f"image folder {base} {what}; set dataset.root=PATH to the folder holding your images")
    files = find_image_files(base)
    if not files:
        raise DatasetError(f"no images found under {base} (looked for {describe_suffixes()} in any case, in subfolders too); set dataset.root=PATH to the folder holding your images")
    if labels:
        files, label_array, class_names = class_layout(files, str(base))
        if label_array is None:
            log.info("folder: no class folders under %s; clustering without labels", base)
    else:
        label_array, class_names = None, []
    decoded = load_images(base, files, options, f"folder_{options.tag()}", "folder", skip_bad)
    data = ImageDataset(
        "folder",
        torch.from_numpy(decoded.images),
        None if label_array is None else torch.from_numpy(label_array[decoded.kept]),
        class_names,
        split,
        names=[files[i].name for i in decoded.kept],
    )
    data.info.update(source=str(base), skipped=len(decoded.bad))
    return data
