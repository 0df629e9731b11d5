"""The same CIFAR-10 images through ``dataset=folder`` and through ``dataset=cifar10``: do the
scores agree?

Writes the class-stratified `dataset.limit` subset of CIFAR-10 (train + test) as lossless PNGs
into a class-folder tree (`<class>/<original index, zero-padded>.png`), checks that the folder
loader gives back exactly the same pixels (as a multiset: the folder's order is by class, then
file name), then runs the same methods with the same seed on both and prints the scores.

    python benchmarks/folder_vs_builtin.py [--root ../shared/data] [--limit 5000] [--epochs 3]
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from _common import SHARED_DATA, run_clusterbench


def digests(images: np.ndarray) -> list[str]:
    return sorted(hashlib.sha1(im.tobytes()).hexdigest() for im in images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=SHARED_DATA)
    parser.add_argument("--limit", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the deep run (epochs, not minutes: reproducible)")
    args = parser.parse_args()

    from omegaconf import OmegaConf

    from clusterbench.data import build_dataset
    from clusterbench.data.folder import load_folder

    cfg = OmegaConf.create({"_target_": "clusterbench.data.cifar.load_cifar10", "name": "cifar10", "root": str(args.root),
                            "split": "all", "limit": args.limit, "download": False})
    data = build_dataset(cfg, 0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "cifar10_png"
        for i, (image, label) in enumerate(zip(data.images.numpy(), data.labels.numpy())):
            target = folder / data.class_names[label]
            target.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image.transpose(1, 2, 0)).save(target / f"{i:05d}.png")
        loaded = load_folder(str(folder))
        same_pixels = digests(loaded.images.numpy()) == digests(data.images.numpy())
        same_order = bool(np.array_equal(loaded.images.numpy(), data.images.numpy()))
        print(f"{len(data)} images: same pixels {same_pixels}, same order {same_order}")

        runs = {
            "kmeans (pixels, 3 restarts)": ["method=kmeans", "method.restarts=3"],
            f"moco ({args.epochs} epochs)": ["method=moco", f"trainer.epochs={args.epochs}", "trainer.eval_every=0", "augment=mocov2",
                                           "augment.blur=0"],
        }
        print("| run | dataset=cifar10 NMI / ACC / ARI | dataset=folder NMI / ACC / ARI |\n|---|---|---|")
        for name, overrides in runs.items():
            common = [*overrides, "plots.enabled=false", "hardware=cpu", "seed=0"]
            a = run_clusterbench([*common, "dataset=cifar10", f"dataset.root={args.root}", f"dataset.limit={args.limit}"], Path(tmp) / f"a{name[:4]}")
            b = run_clusterbench([*common, "dataset=folder", f"dataset.root={folder}"], Path(tmp) / f"b{name[:4]}")
            cell = lambda m: " / ".join(f"{100 * m[k]:.1f}" for k in ("nmi", "acc", "ari"))  # noqa: E731
            print(f"| {name} | {cell(a)} | {cell(b)} |")


if __name__ == "__main__":
    main()
