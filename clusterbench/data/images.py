"""Folders of image files as one uint8 array: discovery, decoding and the decoded-array cache.

The one decoder behind ``dataset=folder`` and ImageNet-Dog. Decoding thousands of JPEGs costs
seconds to minutes, so the decoded array is cached under the root in
``.clusterbench_cache/<dataset>_<size>_<resize>_<channels>.npz`` (the key, names and bad files)
and ``<same>.<key>.npy`` (the images, memory-mapped when loaded), keyed by a hash of the file
list (relative paths, sizes, modification times) and the decoding options: adding, changing or
removing an image rebuilds it, and a cached load reads no image at all.

Decoding runs on every core the process may use. A fork-started process pool writing into one
shared buffer beat threads on 2 cores (benchmarks/folder_decode.py, 20,000 CIFAR-10 JPEGs:
30k against 11k images/s at 32 px, 13k against 12k at 96 px): PIL releases the GIL while it
decodes, but for small images its Python-level header parsing dominates, so threads gain
little or nothing. Where fork is not available, threads are the fallback. Small sets (under
``SERIAL_BELOW`` images) decode in this process.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import mmap
import multiprocessing
import os
import tempfile
import warnings
import zipfile
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, NamedTuple, Optional, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps
from tqdm import tqdm

from clusterbench.data.files import corrupt, first_line
from clusterbench.errors import ConfigError, DatasetError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")  # matched in any case
CACHE_DIR = ".clusterbench_cache"
# Bump when decoding changes (resampling, colour conversion, what the file holds), so old caches are rebuilt.
CACHE_VERSION = "2:bilinear-antialias:i16-scaled"
BILINEAR = getattr(Image, "Resampling", Image).BILINEAR  # Pillow < 9.1 has no Resampling
RESIZE_MODES = ("crop", "stretch", "pad")
CHANNEL_MODES = ("auto", "1", "3")
# PIL modes of single-channel images: with channels=auto a dataset of only these is kept 1-channel.
GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
SERIAL_BELOW = 256  # fewer images than this decode in this process: a pool costs more than it saves
BAD_NAMED = 3  # unreadable files named in the error; the rest are counted


class ImageFile(NamedTuple):
    """One image file found under a root (a tuple: tens of thousands are listed per load)."""

    path: str  # absolute
    name: str  # relative to the root, posix: the image's name in the dataset
    size: int  # bytes
    mtime_ns: int


def describe_suffixes() -> str:
    return ", ".join(IMAGE_SUFFIXES)


def find_image_files(folder: Path, root: Optional[Path] = None) -> list[ImageFile]:
    """Every image file under ``folder``, recursively, sorted by path component (a folder's
    files in name order, as torchvision's ImageFolder), named relative to ``root``.

    Hidden files and folders (a leading dot, the cache folder among them) are skipped, and a
    folder reached twice through links is read once. ``os.scandir`` gives the file types
    without a system call per entry; only image files are stat'ed, for the cache key.
    """
    base = root or folder
    prefix = folder.relative_to(base).as_posix() + "/" if folder != base else ""
    found: list[ImageFile] = []
    seen: set[tuple[int, int]] = set()
    pending = [(str(folder), prefix)]
    while pending:
        directory, rel = pending.pop()
        try:
            seen_key = os.stat(directory)
            if (seen_key.st_dev, seen_key.st_ino) in seen:
                continue
            seen.add((seen_key.st_dev, seen_key.st_ino))
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    if entry.is_dir():
                        pending.append((entry.path, rel + entry.name + "/"))
                    elif os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES and entry.is_file():
                        st = entry.stat()
                        found.append(ImageFile(entry.path, rel + entry.name, st.st_size, st.st_mtime_ns))
        except OSError as ex:
            raise DatasetError(f"cannot list {directory}: {ex.strerror or first_line(ex)}; check that it is readable") from ex
    found.sort(key=lambda f: f.name.split("/"))
    return found


@dataclass(frozen=True)
class DecodeOptions:
    """How files become pixels. ``image_size=None`` keeps the native size (all images must
    then share it). ``channels``: ``"1"``, ``"3"`` or ``"auto"`` (1 when every image is
    greyscale, else 3)."""

    image_size: Optional[int] = None
    resize: str = "crop"
    channels: str = "auto"

    @classmethod
    def checked(cls, image_size: Optional[int], resize: str, channels: object) -> "DecodeOptions":
        """The options from config values, each bad one a ConfigError naming its key."""
        if image_size is not None and image_size < 1:
            raise ConfigError("dataset.image_size", f"{image_size} is not a positive size in pixels; use e.g. 32, or null for the native size")
        if resize not in RESIZE_MODES:
            raise ConfigError("dataset.resize", f"'{resize}' is not a resize mode; use {' | '.join(RESIZE_MODES)}")
        if str(channels) not in CHANNEL_MODES:
            raise ConfigError("dataset.channels", f"'{channels}' is not a channel mode; use auto, 1 or 3")
        return cls(image_size, resize, str(channels))

    def tag(self) -> str:
        """The options in a cache file name, e.g. ``32_crop_auto`` or ``native_auto``."""
        size = "native" if self.image_size is None else f"{self.image_size}_{self.resize}"
        return f"{size}_{self.channels}"

    def target_mode(self, mode: str) -> str:
        """The PIL mode an image of ``mode`` is decoded to: L (1 channel) or RGB."""
        if self.channels == "1" or (self.channels == "auto" and mode in GREY_MODES):
            return "L"
        return "RGB"


def _to_mode(im: Image.Image, target: str) -> Image.Image:
    """``im`` converted to L or RGB. 16-bit greyscale is scaled to 8 bits (PIL's own
    conversion clips everything above 255 to white)."""
    if im.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        pixels = np.rint(np.clip(np.asarray(im, dtype=np.float64), 0, 65535) / 257.0).astype(np.uint8)
        im = Image.fromarray(pixels, mode="L") if pixels.ndim == 2 else Image.fromarray(pixels)
    return im if im.mode == target else im.convert(target)


_RESIZERS: dict[str, Callable[[Image.Image, int], Image.Image]] = {
    "stretch": lambda im, s: im.resize((s, s), BILINEAR),  # CC's Resize((s, s)): the aspect ratio is lost
    "crop": lambda im, s: ImageOps.fit(im, (s, s), BILINEAR),  # short side to s, centre square: Resize(s) + CenterCrop(s)
    "pad": lambda im, s: ImageOps.pad(im, (s, s), BILINEAR, color=0),  # long side to s, zero borders
}


@functools.cache
def _jpeg_decoder() -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
    """torchvision's libjpeg-turbo binding, or None without it. Imported on first use (not
    with this module) and before the workers fork, so they inherit it.

    torchvision 0.29 deprecates its image decoders (for TorchCodec) and warns on every call;
    the warning is silenced because nothing here depends on them: once they are gone, this
    returns None and PIL decodes every file, a little slower.
    """
    try:
        from torchvision.io import decode_jpeg
    except ImportError:  # a torchvision without image support, or after the removal
        return None
    warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision", category=DeprecationWarning)
    return decode_jpeg


def _decode_jpeg(path: str) -> Optional[np.ndarray]:
    """A JPEG's pixels as 1×H×W or 3×H×W uint8 through torchvision: libjpeg-turbo as in PIL,
    the same pixels (tests/test_folder_dataset.py checks), without PIL's Python-level header
    parsing (2–3× faster on 32-px images). None when it cannot (CMYK, a damaged file...): PIL
    then decodes it, or names the fault."""
    decode = _jpeg_decoder()
    if decode is None:
        return None
    try:
        pixels = decode(torch.from_numpy(np.fromfile(path, dtype=np.uint8))).numpy()  # C×H×W
    except (RuntimeError, OSError, ValueError):
        return None
    return pixels if pixels.shape[0] in (1, 3) else None


def _finish(im: Image.Image, target: str, options: DecodeOptions) -> np.ndarray:
    """``im`` in the ``target`` mode at the options' size, as C×H×W uint8."""
    im = _to_mode(im, target)
    if options.image_size is not None:
        im = _RESIZERS[options.resize](im, options.image_size)
    pixels = np.asarray(im, dtype=np.uint8)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)  # H×W(×C) -> C×H×W


def decode_image(path: str, options: DecodeOptions) -> tuple[np.ndarray, bool]:
    """One image as C×H×W uint8 (C = 1 for L, 3 for RGB), and whether the file was greyscale.

    Bilinear resampling, which PIL antialiases when shrinking. Unreadable files raise
    ``OSError``/``ValueError``/... for the caller to collect.

    JPEGs kept at their native size take torchvision's decoder, where PIL's per-file Python
    overhead would be most of the cost. Anything resized goes through PIL alone, so resized
    pixels (ImageNet-Dog's among them) are exactly those of PIL's pipeline.
    """
    if options.image_size is None and path.lower().endswith((".jpg", ".jpeg")):
        pixels = _decode_jpeg(path)
        if pixels is not None:
            grey = pixels.shape[0] == 1
            if (options.target_mode("L" if grey else "RGB") == "L") == grey:
                return pixels, grey
            # else: a colour→grey or grey→colour conversion: PIL's, as for every other file
    with Image.open(path) as im:
        return _finish(im, options.target_mode(im.mode), options), im.mode in GREY_MODES


# What a broken image file raises inside PIL: caught per file, so that all bad files are found.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, Image.DecompressionBombError)


@dataclass
class _Chunk:
    """What decoding images [start, stop) found besides the pixels it wrote."""

    bad: list[tuple[int, str]] = field(default_factory=list)  # (index, reason)
    colour: bool = False  # some image was not greyscale
    wrong_size: Optional[tuple[int, tuple[int, int]]] = None  # (index, (width, height)) of a misfit


class _Job:
    """One decoding pass: the files, the options and the N×C×H×W output every worker writes to
    (shared memory when the workers are forked processes)."""

    def __init__(self, files: Sequence[ImageFile], options: DecodeOptions, shape: tuple[int, int, int, int], shared: bool) -> None:
        self.files, self.options = files, options
        nbytes = int(np.prod(shape))
        if shared:
            self._buffer = mmap.mmap(-1, max(nbytes, 1))  # anonymous MAP_SHARED: children write, we read
            self.out = np.frombuffer(self._buffer, dtype=np.uint8, count=nbytes).reshape(shape)
        else:
            self.out = np.empty(shape, dtype=np.uint8)

    def run(self, start: int, stop: int) -> _Chunk:
        chunk = _Chunk()
        _, c, h, w = self.out.shape
        for i in range(start, stop):
            try:
                pixels, grey = decode_image(self.files[i].path, self.options)
            except DECODE_ERRORS as ex:
                chunk.bad.append((i, f"{type(ex).__name__}: {first_line(ex)}"))
                continue
            if pixels.shape[1:] != (h, w):
                chunk.wrong_size = (i, (pixels.shape[2], pixels.shape[1]))
                return chunk
            chunk.colour |= not grey
            self.out[i] = pixels  # a 1-channel image fills every channel of a 3-channel output
        return chunk


_forked_job: Optional[_Job] = None  # the job forked workers inherit (a fork copies this module's state)


def _run_forked(start: int, stop: int) -> _Chunk:
    assert _forked_job is not None
    return _forked_job.run(start, stop)


def worker_count() -> int:
    """The cores this process may run on (a Slurm or taskset limit counts, unlike cpu_count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _reference_size(files: Sequence[ImageFile]) -> tuple[int, tuple[int, int]]:
    """The index and (width, height) of the first file whose header reads: with native sizes,
    every image must match it. Only headers are read, not pixels."""
    for i, f in enumerate(files):
        try:
            with Image.open(f.path) as im:
                return i, im.size
        except DECODE_ERRORS:
            continue
    return 0, (1, 1)  # nothing readable: every file will be reported as bad


@dataclass
class Decoded:
    """The decoded images of the readable files, and the files that were not."""

    images: np.ndarray  # N'×C×H×W uint8
    kept: np.ndarray  # int64 indices of the decoded files in the file list
    bad: list[tuple[str, str]]  # (name, reason) of each unreadable file


def decode_files(files: Sequence[ImageFile], options: DecodeOptions, desc: str, pool: str = "auto") -> Decoded:
    """Decode ``files`` in parallel with a progress bar. ``pool``: ``process`` (fork; the
    default where available), ``thread``, ``serial`` or ``auto``. Mixed native sizes are a
    DatasetError naming two files of different sizes."""
    n = len(files)
    workers = min(worker_count(), max(1, n // 64))
    if pool == "auto":
        forkable = "fork" in multiprocessing.get_all_start_methods()
        pool = "serial" if n < SERIAL_BELOW or workers == 1 else ("process" if forkable else "thread")
    if options.image_size is None:
        ref, (width, height) = _reference_size(files)
    else:
        ref, (width, height) = 0, (options.image_size, options.image_size)
    channels = 1 if options.channels == "1" else 3
    if pool == "process" and options.image_size is None:
        _jpeg_decoder()  # imported once, here, so that the forked workers inherit it
    job = _Job(files, options, (n, channels, height, width), shared=pool == "process")
    step = max(16, min(256, n // (8 * workers) or 1))
    chunks: list[_Chunk] = []
    with tqdm(total=n, desc=desc, unit="img", leave=False) as bar:
        if pool == "serial":
            for start in range(0, n, step):
                chunks.append(job.run(start, min(start + step, n)))
                bar.update(min(step, n - start))
        else:
            chunks = _run_pool(job, pool, workers, step, bar)
    misfit = next((c.wrong_size for c in chunks if c.wrong_size is not None), None)
    if misfit is not None:
        i, (w, h) = misfit
        raise DatasetError(
            f"images differ in size: {files[ref].path} is {width}×{height} but {files[i].path} is {w}×{h}; "
            f"set dataset.image_size=S to resize them all to S×S (dataset.resize=crop|stretch|pad)"
        )
    bad = sorted(b for c in chunks for b in c.bad)
    images = job.out
    if options.channels == "auto" and not any(c.colour for c in chunks):
        images = np.ascontiguousarray(images[:, :1])  # every image was greyscale: keep one channel
    kept = np.setdiff1d(np.arange(n), [i for i, _ in bad]).astype(np.int64)
    if bad:
        images = images[kept]
    return Decoded(images, kept, [(files[i].name, reason) for i, reason in bad])


def _run_pool(job: _Job, pool: str, workers: int, step: int, bar: tqdm) -> list[_Chunk]:
    """Run the chunks of ``job`` on ``workers`` processes (forked: they inherit the job and write
    into its shared buffer) or threads; a failure cancels the chunks not started."""
    global _forked_job
    executor: Executor
    if pool == "process":
        _forked_job = job
        executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
        run: Callable[[int, int], _Chunk] = _run_forked
    else:
        executor = ThreadPoolExecutor(workers)
        run = job.run
    n = len(job.files)
    chunks = []
    try:
        futures = {executor.submit(run, s, min(s + step, n)): min(step, n - s) for s in range(0, n, step)}
        for future in as_completed(futures):
            chunks.append(future.result())
            bar.update(futures[future])
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
        _forked_job = None
    return chunks


def cache_key(files: Sequence[ImageFile], options: DecodeOptions) -> str:
    """A hash of everything the decoded array depends on: each file's relative path, size and
    modification time, the decoding options and the decoder's version."""
    digest = hashlib.sha256(f"{CACHE_VERSION}\n{options}\n".encode())
    digest.update("".join(f"{f.name}\t{f.size}\t{f.mtime_ns}\n" for f in files).encode())
    return digest.hexdigest()


def images_path(meta: Path, key: str) -> Path:
    """The ``.npy`` of the decoded images beside the cache's ``.npz``: named by the key, so a
    file of that name only ever holds that decode, and a rebuild for other files never
    rewrites an array another run may still have mapped."""
    return meta.with_name(f"{meta.stem}.{key[:16]}.npy")


def read_cache(path: Path, key: str, files: Sequence[ImageFile], dataset: str) -> tuple[Optional[Decoded], bool]:
    """The cached decode if the cache exists and was built from the same files and options,
    and whether it is in the old one-file layout (to be rewritten).

    The images are memory-mapped (copy-on-write: they read as any array, and a write stays in
    this process), so a dataset larger than RAM is paged in as it is used, not read up front.
    An old cache (the images inside the ``.npz``) is read whole, once.
    """
    if not path.is_file():
        return None, False
    try:
        with np.load(path, allow_pickle=False) as cache:
            if str(cache["key"]) != key:
                log.info("%s: the image files changed since %s was written; decoding again", dataset, path)
                return None, False
            old = "images" in cache.files
            kept, names = cache["kept"], cache["names"].tolist()
            bad = [tuple(pair) for pair in cache["bad"].tolist()]
            images = cache["images"] if old else np.load(images_path(path, key), mmap_mode="c", allow_pickle=False)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as ex:
        log.warning("%s: ignoring unreadable cache %s (%s); decoding again", dataset, path, first_line(ex))
        return None, False
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) != len(kept) or names != [files[i].name for i in kept]:
        log.warning("%s: ignoring inconsistent cache %s; decoding again", dataset, path)
        return None, False
    return Decoded(images, kept.astype(np.int64), bad), old


def _write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """``write`` into a temporary file in ``path``'s folder, then rename it over ``path``: an
    interrupted run or a concurrent reader never sees half a file."""
    tmp = None
    try:
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.stem + ".", suffix=".tmp", delete=False) as f:
            tmp = f.name
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


def write_cache(path: Path, key: str, decoded: Decoded, files: Sequence[ImageFile], dataset: str) -> None:
    """Write the cache: the images as a plain ``.npy`` (``images_path``: what ``np.load`` can
    map), then the small ``.npz`` at ``path`` holding the key, the kept files' names and the
    bad files. Each is written atomically and the ``.npz`` last, so a reader that finds the
    key finds its images; arrays of older keys are removed after. A read-only root just means
    no cache. Uncompressed: loading must be fast, and JPEG pixels hardly compress."""
    images = images_path(path, key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(images, lambda f: np.save(f, decoded.images, allow_pickle=False))
        _write_atomic(path, lambda f: np.savez(
            f,
            kept=decoded.kept,
            names=np.asarray([files[i].name for i in decoded.kept], dtype=str),
            bad=np.asarray(decoded.bad, dtype=str).reshape(-1, 2),
            key=np.asarray(key),
        ))
    except OSError as ex:
        log.warning("%s: cannot write the cache %s (%s); images will be decoded again next time", dataset, path, first_line(ex))
        return
    for stale in path.parent.glob(f"{path.stem}.*.npy"):
        if stale != images:
            try:
                stale.unlink()  # a run that mapped it keeps its pages until it ends
            except OSError:
                pass  # gone already, or mapped on a system that cannot remove it: the next rebuild tries again


def check_bad(decoded: Decoded, root: Path, skip_bad: bool, dataset: str) -> None:
    """Unreadable files stop the load with one line naming them (the first few and a count),
    unless ``skip_bad``: then they are left out with a warning."""
    if not decoded.bad:
        return
    count = len(decoded.bad)
    name, reason = decoded.bad[0]
    if skip_bad and not len(decoded.kept):
        raise DatasetError(f"none of the {count} images under {root} is readable (e.g. {root / name}: {reason}); check that they are image files")
    if skip_bad:
        shown = ", ".join(n for n, _ in decoded.bad[:BAD_NAMED])
        log.warning("%s: skipped %d unreadable image%s under %s (%s%s)", dataset, count, "s" if count > 1 else "", root, shown, ", ..." if count > BAD_NAMED else "")
        return
    if count == 1:
        raise corrupt(root / name, f"not a readable image ({reason})", fix="replace or delete it, or set dataset.skip_bad=true to skip unreadable images")
    others = ", ".join(str(root / n) for n, _ in decoded.bad[1:BAD_NAMED])
    more = f" and {count - BAD_NAMED} more" if count > BAD_NAMED else ""
    raise DatasetError(
        f"{count} unreadable images under {root}: {root / name} ({reason}), {others}{more}; "
        f"replace or delete them, or set dataset.skip_bad=true to skip them"
    )


def load_images(root: Path, files: Sequence[ImageFile], options: DecodeOptions, cache_name: str, dataset: str, skip_bad: bool) -> Decoded:
    """The decoded ``files`` (named relative to ``root``), from the cache
    ``<root>/.clusterbench_cache/<cache_name>.npz`` (and its images' ``.npy``) when it matches,
    else decoded and cached.

    The cache holds the bad files' names too, so a cached load reports them as a fresh one does.
    A cache in the old one-file layout is read and rewritten in the mappable one.
    """
    key = cache_key(files, options)
    cache = root / CACHE_DIR / f"{cache_name}.npz"
    decoded, old = read_cache(cache, key, files, dataset)
    if old and decoded is not None:
        log.info("%s: rewriting %s so that its images can be memory-mapped", dataset, cache)
        write_cache(cache, key, decoded, files, dataset)
    if decoded is None:
        log.info("%s: decoding %d images under %s (once; cached in %s)", dataset, len(files), root, cache)
        decoded = decode_files(files, options, desc=f"decoding {dataset}")
        if not decoded.bad or skip_bad:  # an error now would leave a cache behind that nobody asked for
            write_cache(cache, key, decoded, files, dataset)
    check_bad(decoded, root, skip_bad, dataset)
    return decoded
