"""Images/s of ``dataset=folder``'s first load (decoding) and its cached load, against
torchvision's ImageFolder in a DataLoader; and the CLI's peak memory on such a folder.

    python benchmarks/folder_decode.py [--root ../shared/data] [--work /tmp/clusterbench_folder_decode] [--count 20000]

The first ``--count`` CIFAR-10 training images (read with clusterbench's CIFAR loader) are
written once as JPEG class folders under ``--work``: ``jpeg32/`` at their 32 px and ``jpeg96/``
upsampled (bicubic) to 96 px. For each size, in one run:

- baseline: ``torchvision.datasets.ImageFolder`` with ``Resize((S, S))`` + ``ToTensor`` iterated by
  a DataLoader (batch 256, 2 workers), every batch consumed;
- first load: ``load_folder(root)`` (native size, the default) with no cache, decoding on all cores;
- cached load: the same call in a fresh process, as the next run makes it (lists and stats the
  files, reads the .npz; the interpreter's start and imports are not counted);
- first load resized: ``load_folder(root, image_size=S)``: every image through PIL's resampling;
- the decoder alone (native size) on each pool (serial, threads, forked processes): why
  processes are the default.

Then the peak RSS (``ru_maxrss`` of a child) of ``clusterbench method=kmeans dataset=folder
dataset.root=<jpeg32>``, with the cache cold and warm. Prints Markdown.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED_DATA  # noqa: E402

from clusterbench.data.cifar import load_cifar10  # noqa: E402
from clusterbench.data.folder import load_folder  # noqa: E402
from clusterbench.data.images import CACHE_DIR, DecodeOptions, decode_files, find_image_files, worker_count  # noqa: E402


def write_tree(data_root: Path, out: Path, size: int, count: int) -> Path:
    """``out/<class>/<index>.jpg`` for the first ``count`` CIFAR-10 training images, once."""
    done = out / ".complete"
    if done.exists() and done.read_text() == str(count):
        return out
    shutil.rmtree(out, ignore_errors=True)
    data = load_cifar10(str(data_root), "train")
    for i in range(count):
        folder = out / data.class_names[int(data.labels[i])]
        folder.mkdir(parents=True, exist_ok=True)
        im = Image.fromarray(data.images[i].numpy().transpose(1, 2, 0))
        if size != im.width:
            im = im.resize((size, size), Image.Resampling.BICUBIC)
        im.save(folder / f"{i:05d}.jpg", quality=90)
    done.write_text(str(count))
    return out


def timed(fn) -> tuple[float, object]:
    """Seconds of ``fn()`` and its result. Dirty pages are flushed first: writing back the last
    step's cache (half a gigabyte at 96 px) would otherwise be charged to this one."""
    os.sync()
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def baseline(root: Path, size: int) -> None:
    """torchvision's ImageFolder → DataLoader(batch 256, 2 workers) over every image."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    ds = datasets.ImageFolder(str(root), transform=transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor()]))
    for _ in DataLoader(ds, batch_size=256, num_workers=2):
        pass


def cached_load_seconds(root: Path) -> float:
    """``load_folder(root)`` timed inside a fresh process: what the next run pays. (In this one,
    which already holds the images, the fresh pages of another copy cost more than the read.)"""
    code = ("import sys, time; from clusterbench.data.folder import load_folder; t = time.perf_counter(); "
            "d = load_folder(sys.argv[1]); print(time.perf_counter() - t); assert d.info['skipped'] == 0")
    os.sync()
    out = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def peak_rss_mb(*overrides: str) -> float:
    """ru_maxrss of one k-means CLI run, measured in a fresh wrapper so no other child counts."""
    with tempfile.TemporaryDirectory() as tmp:
        cli = [sys.executable, "-m", "clusterbench", "method=kmeans", *overrides, "plots.enabled=false", f"hydra.run.dir={tmp}/run"]
        wrapper = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
                   "assert r.returncode == 0, r.stderr[-2000:]; print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        out = subprocess.run([sys.executable, "-c", wrapper, *cli], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=SHARED_DATA)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "clusterbench_folder_decode")
    parser.add_argument("--count", type=int, default=20_000)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the DataLoader's workers and our pool each use one core per worker
    print(f"{args.count:,} CIFAR-10 JPEGs, {worker_count()} cores, torch {torch.__version__}\n")
    print("| size | torchvision ImageFolder + DataLoader(2 workers) | first load (decode + cache) | ratio | cached load "
          "| first load, image_size=S | ratio | decoder: serial | threads | processes |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    trees = {}
    for size in (32, 96):
        root = write_tree(args.root, args.work / f"jpeg{size}", size, args.count)
        trees[size] = root
        shutil.rmtree(root / CACHE_DIR, ignore_errors=True)  # ImageFolder would take the cache folder for a class
        t_base, _ = timed(lambda: baseline(root, size))
        t_first, first = timed(lambda: load_folder(str(root)))
        t_cached = cached_load_seconds(root)
        t_resized, resized = timed(lambda: load_folder(str(root), image_size=size))
        assert torch.equal(first.images, resized.images)  # the same pixels through PIL
        files = find_image_files(root)
        pools = {}
        for pool in ("serial", "thread", "process"):
            pools[pool], decoded = timed(lambda: decode_files(files, DecodeOptions(None, "crop", "auto"), pool, pool=pool))
            assert np.array_equal(decoded.images, first.images.numpy())
        n = len(first)
        rate = lambda t: f"{n / t:,.0f} img/s"  # noqa: E731
        print(f"| {size} px | {rate(t_base)} ({t_base:.2f} s) | {rate(t_first)} ({t_first:.2f} s) | {t_base / t_first:.1f}× | "
              f"{t_cached:.2f} s | {rate(t_resized)} | {t_base / t_resized:.1f}× "
              f"| {rate(pools['serial'])} | {rate(pools['thread'])} | {rate(pools['process'])} |")
    shutil.rmtree(trees[32] / CACHE_DIR, ignore_errors=True)
    cold = peak_rss_mb("dataset=folder", f"dataset.root={trees[32]}")
    warm = peak_rss_mb("dataset=folder", f"dataset.root={trees[32]}")
    digits = peak_rss_mb("dataset=digits")
    array_mb = args.count * 3 * 32 * 32 / 2**20
    print(f"\nPeak RSS of `clusterbench method=kmeans dataset=folder dataset.root={trees[32]}`: "
          f"{cold:,.0f} MB decoding, {warm:,.0f} MB from the cache; `dataset=digits`: {digits:,.0f} MB "
          f"(the images: {array_mb:,.0f} MB)")
    for root in trees.values():
        shutil.rmtree(root / CACHE_DIR, ignore_errors=True)


if __name__ == "__main__":
    main()
