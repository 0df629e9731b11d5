"""Views per second: the batched Augmenter against torchvision's per-sample transforms.

    python benchmarks/augment_speed.py [--batches 20] [--batch-size 256] [--workers 2] [--root ../shared/data]

Two recipes, two views per image: MoCo v2 (conf/augment/mocov2.yaml) on CIFAR-10-sized
3×32×32 images and the MNIST recipe (conf/augment/mnist.yaml) on 1×28×28. Real CIFAR-10
(data_batch_1) and MNIST (train images) are used when ``--root`` holds them, random uint8
images otherwise. The baseline is what a torchvision pipeline does: PIL images through
RandomResizedCrop, RandomAffine (MNIST only), RandomHorizontalFlip, RandomApply(ColorJitter),
RandomGrayscale, RandomApply(GaussianBlur), ToTensor, Normalize, in a DataLoader with
``--workers`` worker processes. The batched path runs in this process on the CPU with one
thread and with torch's default thread count (and on CUDA as well when it is visible). Both run in the same
process, one after the other; the first batch of each is left out of the timing (worker
start-up, first-call allocations). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED_DATA  # noqa: E402

from clusterbench.config import AugmentConfig  # noqa: E402
from clusterbench.data.augment import Augmenter  # noqa: E402

MEANS = {3: ([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]), 1: ([0.1307], [0.3081])}  # CIFAR-10, MNIST


def load_recipe(name: str):
    """conf/augment/<name>.yaml on the typed schema (the defaults list, by hand)."""
    raw = OmegaConf.create((resources.files("clusterbench.conf") / "augment" / f"{name}.yaml").read_text())
    raw.pop("defaults")
    return OmegaConf.merge(OmegaConf.structured(AugmentConfig), raw)


def load_images(root: Path, which: str, count: int) -> tuple[torch.Tensor, str]:
    """Up to ``count`` uint8 N×C×H×W images: real ones under ``root`` when present, else random."""
    if which == "cifar10":
        path = root / "cifar-10-batches-py" / "data_batch_1"
        if path.exists():
            from clusterbench.data.cifar import read_batch

            data, _ = read_batch(path, "labels", 10)
            return torch.from_numpy(np.ascontiguousarray(data[:count])), "CIFAR-10"
        shape = (3, 32, 32)
    else:
        path = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
        if path.exists():
            from clusterbench.data.mnist import IMAGES_MAGIC, read_idx

            data = read_idx(path, IMAGES_MAGIC)[:count]
            return torch.from_numpy(np.ascontiguousarray(data)).unsqueeze(1), "MNIST"
        shape = (1, 28, 28)
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (count, *shape), generator=g, dtype=torch.uint8), "random"


def torchvision_transform(cfg, size: int, channels: int):
    """The recipe as torchvision's per-sample PIL transforms (MoCo v2's main_moco.py style)."""
    import torchvision.transforms as T

    steps = [T.RandomResizedCrop(size, scale=tuple(cfg.global_scale), ratio=tuple(cfg.ratio))]
    if cfg.rotate > 0 or cfg.translate > 0:
        steps.append(T.RandomAffine(degrees=cfg.rotate, translate=(cfg.translate, cfg.translate)))
    if cfg.hflip > 0:
        steps.append(T.RandomHorizontalFlip(cfg.hflip))
    colour = channels == 3
    strengths = (cfg.brightness, cfg.contrast, cfg.saturation if colour else 0, cfg.hue if colour else 0)
    if cfg.jitter > 0 and any(strengths):
        steps.append(T.RandomApply([T.ColorJitter(*strengths)], p=cfg.jitter))
    if colour and cfg.grayscale > 0:
        steps.append(T.RandomGrayscale(cfg.grayscale))
    if cfg.blur > 0:
        kernel = 2 * math.ceil(3 * cfg.blur_sigma[1]) + 1  # the Augmenter's kernel size
        steps.append(T.RandomApply([T.GaussianBlur(kernel, sigma=tuple(cfg.blur_sigma))], p=cfg.blur))
    if cfg.solarize > 0:
        steps.append(T.RandomSolarize(round(cfg.solarize_threshold * 255), p=cfg.solarize))
    steps += [T.ToTensor(), T.Normalize(*MEANS[channels])]
    return T.Compose(steps)


class TwoViews(torch.utils.data.Dataset):
    """What a torchvision-style dataset does per item: uint8 array → PIL image → two transformed views."""

    def __init__(self, images: torch.Tensor, transform) -> None:
        arr = images.numpy()
        self.images = arr[:, 0] if arr.shape[1] == 1 else arr.transpose(0, 2, 3, 1)  # PIL wants H×W(×C)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        from PIL import Image

        image = Image.fromarray(self.images[i])
        return self.transform(image), self.transform(image)


def time_torchvision(images: torch.Tensor, cfg, batches: int, batch_size: int, workers: int) -> float:
    """Views per second through a DataLoader, batches 2..batches+1."""
    channels, size = images.shape[1], images.shape[-1]
    data = TwoViews(images[: (batches + 1) * batch_size], torchvision_transform(cfg, size, channels))
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, num_workers=workers)
    it = iter(loader)
    next(it)  # workers started, first batch out
    start, views = time.perf_counter(), 0
    for v1, v2 in it:
        views += len(v1) + len(v2)
    return views / (time.perf_counter() - start)


def time_batched(images: torch.Tensor, cfg, batches: int, batch_size: int, device: str, threads: int) -> float:
    """Views per second of Augmenter on ``device`` with ``threads`` CPU threads, batches 2..batches+1."""
    channels, size = images.shape[1], images.shape[-1]
    aug = Augmenter(cfg, size, channels, *MEANS[channels])
    images = images[: (batches + 1) * batch_size].to(device)
    g = torch.Generator(device=device).manual_seed(0)
    chunks = images.split(batch_size)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        aug(chunks[0], g)
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        sync()
        start, views = time.perf_counter(), 0
        for chunk in chunks[1:]:
            views += sum(len(v) for v in aug(chunk, g))
        sync()
        return views / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=20, help="timed batches per pipeline (one more is warm-up)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the torchvision baseline")
    parser.add_argument("--root", type=Path, default=SHARED_DATA)
    args = parser.parse_args()
    count = (args.batches + 1) * args.batch_size
    cores = torch.get_num_threads()
    # One thread as well as all: an op on a 32-px batch is a few hundred µs, so a second thread
    # gains little, and on a shared machine every op waits for a descheduled thread.
    variants = [("cpu", t) for t in sorted({1, cores})] + ([("cuda", 1)] if torch.cuda.is_available() else [])
    print(f"{args.batches} timed batches of {args.batch_size} images, 2 views each; torch {torch.__version__}, "
          f"{cores} CPU threads available\n")
    print("| recipe | images | pipeline | views/s | × torchvision |")
    print("|---|---|---|---|---|")
    for recipe, dataset in (("mocov2", "cifar10"), ("mnist", "mnist")):
        cfg = load_recipe(recipe)
        images, source = load_images(args.root, dataset, count)
        if len(images) < count:  # fewer real images than asked for: cycle them
            images = images.repeat((count + len(images) - 1) // len(images), 1, 1, 1)[:count]
        what = f"{recipe} | {source} {'×'.join(map(str, images.shape[1:]))}"
        base = time_torchvision(images, cfg, args.batches, args.batch_size, args.workers)
        print(f"| {what} | torchvision, PIL, DataLoader {args.workers} workers | {base:,.0f} | 1.0× |", flush=True)
        for device, threads in variants:
            fast = time_batched(images, cfg, args.batches, args.batch_size, device, threads)
            where = "CUDA" if device == "cuda" else f"CPU, {threads} thread{'s' if threads > 1 else ''}"
            print(f"| {what} | Augmenter, {where} | {fast:,.0f} | {fast / base:.1f}× |", flush=True)

if __name__ == "__main__":
    main()
