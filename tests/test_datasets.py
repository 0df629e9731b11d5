"""The file-based loaders read the real on-disk formats exactly, and every broken or missing
file gives a one-line error that names the path and the fix.

All data is tiny and written by tests/formats.py; nothing here touches the network.
"""

from __future__ import annotations

import gzip
import logging
import pickle
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
import formats  # noqa: E402

from clusterbench.config import Cifar100Targets  # noqa: E402
from clusterbench.data import imagenet_dog  # noqa: E402
from clusterbench.data.cifar import load_cifar10, load_cifar100  # noqa: E402
from clusterbench.data.imagenet_dog import load_imagenet_dog  # noqa: E402
from clusterbench.data.mnist import load_mnist  # noqa: E402
from clusterbench.data.stl10 import load_stl10  # noqa: E402
from clusterbench.errors import ConfigError, DatasetError  # noqa: E402


def dataset_error(fn, *args, **kwargs) -> str:
    """The message of the DatasetError ``fn`` raises, checked to be one line."""
    with pytest.raises(DatasetError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def truncate(path: Path, size: int) -> None:
    path.write_bytes(path.read_bytes()[:size])


def check_dataset(data, images: np.ndarray, labels: np.ndarray) -> None:
    assert data.images.dtype == torch.uint8 and data.labels.dtype == torch.int64
    assert data.images.is_contiguous()
    np.testing.assert_array_equal(data.images.numpy(), images)
    np.testing.assert_array_equal(data.labels.numpy(), labels)


def cat(parts: dict, *splits: str, index: int = 1) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([parts[s][0] for s in splits]), np.concatenate([parts[s][index] for s in splits])


@pytest.fixture
def no_download(monkeypatch):
    """Make any torchvision download attempt fail the test."""
    import torchvision.datasets

    def refuse(*args, **kwargs):
        raise AssertionError("tried to download")

    for name in ("MNIST", "CIFAR10", "CIFAR100", "STL10"):
        monkeypatch.setattr(torchvision.datasets, name, refuse)


# --- MNIST ------------------------------------------------------------------------------------


@pytest.mark.parametrize("split, parts", [("all", ("train", "test")), ("train", ("train",)), ("test", ("test",))])
def test_mnist_splits_round_trip_exactly(tmp_path, split, parts, no_download):
    written = formats.write_mnist(tmp_path, n_train=6, n_test=4)
    data = load_mnist(str(tmp_path), split, False)
    check_dataset(data, *cat(written, *parts))
    assert data.images.shape[1:] == (1, 28, 28) and data.split == split
    assert data.class_names == [str(i) for i in range(10)] and data.name == "mnist"


def test_mnist_pixel_lands_at_its_row_and_column(tmp_path):
    formats.write_mnist(tmp_path)
    x = np.zeros((2, 28, 28), np.uint8)
    x[1, 3, 20] = 200  # row 3, column 20 of image 1
    formats.write_idx(tmp_path / "MNIST/raw/t10k-images-idx3-ubyte", x)
    formats.write_idx(tmp_path / "MNIST/raw/t10k-labels-idx1-ubyte", np.asarray([7, 2], np.uint8))
    data = load_mnist(str(tmp_path), "test", False)
    assert data.images[1, 0, 3, 20] == 200 and int(data.images.sum()) == 200
    assert data.labels.tolist() == [7, 2]


def test_mnist_reads_gz_copies(tmp_path):
    written = formats.write_mnist(tmp_path, gz=True)
    assert not (tmp_path / "MNIST/raw/train-images-idx3-ubyte").exists()
    check_dataset(load_mnist(str(tmp_path), "all", False), *cat(written, "train", "test"))


def test_mnist_reads_only_the_files_its_split_needs(tmp_path):
    written = formats.write_mnist(tmp_path)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (tmp_path / "MNIST/raw" / name).unlink()
    check_dataset(load_mnist(str(tmp_path), "test", False), *written["test"])


def test_mnist_missing_files_name_folder_files_and_fix(tmp_path):
    message = dataset_error(load_mnist, str(tmp_path), "all", False)
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte" in message and "t10k-labels-idx1-ubyte" in message
    assert "dataset.root" in message and "dataset.download=true" in message


def test_mnist_relative_root_is_reported_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert str(tmp_path / "data" / "MNIST" / "raw") in dataset_error(load_mnist, "data", "all", False)


def test_mnist_truncated_file_names_the_file_and_sizes(tmp_path):
    formats.write_mnist(tmp_path, n_train=6)
    path = tmp_path / "MNIST/raw/train-images-idx3-ubyte"
    truncate(path, 1000)
    message = dataset_error(load_mnist, str(tmp_path), "all", False)
    assert str(path) in message and f"expected {16 + 6 * 28 * 28} bytes" in message and "found 1000" in message
    assert "download again" in message


def test_mnist_truncated_gz_names_the_file(tmp_path):
    formats.write_mnist(tmp_path, gz=True)
    path = tmp_path / "MNIST/raw/train-labels-idx1-ubyte.gz"
    truncate(path, 20)
    assert str(path) in dataset_error(load_mnist, str(tmp_path), "train", False)


def test_mnist_wrong_magic_is_named(tmp_path):
    formats.write_mnist(tmp_path)
    path = tmp_path / "MNIST/raw/train-images-idx3-ubyte"
    formats.write_idx(path, np.zeros((6, 28, 28), np.uint8), magic=2049)  # a labels magic on images
    message = dataset_error(load_mnist, str(tmp_path), "train", False)
    assert str(path) in message and "magic number 2049, expected 2051" in message


def test_mnist_label_count_must_match_image_count(tmp_path):
    formats.write_mnist(tmp_path, n_test=4)
    path = tmp_path / "MNIST/raw/t10k-labels-idx1-ubyte"
    formats.write_idx(path, np.zeros(3, np.uint8))
    message = dataset_error(load_mnist, str(tmp_path), "test", False)
    assert str(path) in message and "3 labels" in message and "4 images" in message


def test_mnist_wrong_image_size_is_named(tmp_path):
    formats.write_mnist(tmp_path)
    path = tmp_path / "MNIST/raw/t10k-images-idx3-ubyte"
    formats.write_idx(path, np.zeros((4, 32, 32), np.uint8))
    assert "32×32, expected 28×28" in dataset_error(load_mnist, str(tmp_path), "test", False)


def test_unknown_split_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="dataset.split"):
        load_mnist(str(tmp_path), "val", False)


def test_download_failure_is_one_line_naming_dataset_root_and_cause(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution\nmore detail")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    message = dataset_error(load_mnist, str(tmp_path), "all", True)
    assert message.startswith("mnist download into") and str(tmp_path) in message
    assert "URLError" in message and "name resolution" in message and "by hand" in message


def test_download_fetches_missing_files_then_reads_them(tmp_path, monkeypatch):
    import torchvision.datasets

    calls = []

    def fake_mnist(root, train, download):
        calls.append((root, train, download))
        formats.write_mnist(Path(root), n_train=5, n_test=2, seed=3)

    monkeypatch.setattr(torchvision.datasets, "MNIST", fake_mnist)
    data = load_mnist(str(tmp_path), "all", True)
    assert len(data) == 7 and calls == [(str(tmp_path), True, True)]


def test_download_is_skipped_when_the_files_are_there(tmp_path, no_download):
    formats.write_mnist(tmp_path)
    formats.write_cifar10(tmp_path)
    formats.write_cifar100(tmp_path)
    formats.write_stl10(tmp_path)
    assert len(load_mnist(str(tmp_path), "all", True)) == 10
    assert len(load_cifar10(str(tmp_path), "all", True)) == 19
    assert len(load_cifar100(str(tmp_path), "all", True)) == 8
    assert len(load_stl10(str(tmp_path), "all", True)) == 5


@pytest.mark.parametrize(
    "loader, cls, args",
    [(load_cifar10, "CIFAR10", ()), (load_cifar100, "CIFAR100", ("coarse",)), (load_stl10, "STL10", (False,))],
)
def test_download_failures_of_every_torchvision_dataset(tmp_path, monkeypatch, loader, cls, args):
    import torchvision.datasets

    def offline(*a, **k):
        raise urllib.error.URLError("no route")

    monkeypatch.setattr(torchvision.datasets, cls, offline)
    message = dataset_error(loader, str(tmp_path), "all", True, *args)
    assert str(tmp_path) in message and "no route" in message


# --- CIFAR-10 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("split, parts", [("all", ("train", "test")), ("train", ("train",)), ("test", ("test",))])
def test_cifar10_splits_round_trip_exactly(tmp_path, split, parts):
    written = formats.write_cifar10(tmp_path, per_batch=3, n_test=4)
    data = load_cifar10(str(tmp_path), split, False)
    check_dataset(data, *cat(written, *parts))
    assert data.images.shape[1:] == (3, 32, 32) and data.class_names[:2] == ["airplane", "automobile"]


def test_cifar10_fixture_is_a_python2_pickle_with_bytes_keys(tmp_path):
    formats.write_cifar10(tmp_path)
    with open(tmp_path / "cifar-10-batches-py/data_batch_1", "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    assert set(batch) == {b"batch_label", b"labels", b"data", b"filenames"}


def test_cifar_row_layout_is_red_then_green_then_blue_planes(tmp_path):
    formats.write_cifar10(tmp_path)
    rows = np.zeros((2, 3072), np.uint8)
    rows[1, 2 * 1024 + 5 * 32 + 9] = 77  # blue plane, row 5, column 9 of image 1
    formats.write_pickle(tmp_path / "cifar-10-batches-py/test_batch", {"batch_label": "t", "labels": [0, 9], "data": rows, "filenames": ["a", "b"]})
    data = load_cifar10(str(tmp_path), "test", False)
    assert data.images[1, 2, 5, 9] == 77 and int(data.images.sum()) == 77 and data.labels.tolist() == [0, 9]


def test_cifar10_missing_batch_is_named(tmp_path):
    formats.write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py/data_batch_3").unlink()
    message = dataset_error(load_cifar10, str(tmp_path), "all", False)
    assert str(tmp_path / "cifar-10-batches-py") in message and "data_batch_3" in message and "test_batch" not in message
    assert "dataset.root" in message and "dataset.download=true" in message
    assert len(load_cifar10(str(tmp_path), "test", False)) == 4  # the test split does not need it


def test_cifar10_truncated_pickle_is_named(tmp_path):
    formats.write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py/data_batch_2"
    truncate(path, 200)
    message = dataset_error(load_cifar10, str(tmp_path), "train", False)
    assert f"corrupt dataset file {path}" in message


def test_cifar10_wrong_keys_are_named(tmp_path):
    formats.write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py/test_batch"
    formats.write_pickle(path, {"batch_label": "t", "labels": [1], "pixels": np.zeros((1, 3072), np.uint8)})
    message = dataset_error(load_cifar10, str(tmp_path), "test", False)
    assert str(path) in message and "missing keys data" in message


@pytest.mark.parametrize(
    "data, labels, expected",
    [
        (np.zeros((2, 3000), np.uint8), [1, 2], "uint8 N×3072, found uint8 2×3000"),
        (np.zeros((2, 3072), np.float32), [1, 2], "found float32"),
        (np.zeros((2, 3072), np.uint8), [1], "2 images but 1 labels"),
        (np.zeros((2, 3072), np.uint8), [1, 10], "must lie in 0..9, found 10"),
        (np.zeros((2, 3072), np.uint8), [1, -1], "found -1"),
    ],
)
def test_cifar10_wrong_shapes_counts_and_labels_are_named(tmp_path, data, labels, expected):
    formats.write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py/test_batch"
    formats.write_pickle(path, {"batch_label": "t", "labels": labels, "data": data, "filenames": []})
    message = dataset_error(load_cifar10, str(tmp_path), "test", False)
    assert str(path) in message and expected in message


def test_cifar10_wrong_meta_is_named(tmp_path):
    formats.write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py/batches.meta"
    formats.write_pickle(path, {"label_names": ["a", "b"]})
    assert "expected 10 label_names, found 2" in dataset_error(load_cifar10, str(tmp_path), "test", False)


def test_pickles_naming_other_globals_are_refused_not_run(tmp_path):
    formats.write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py/test_batch"
    marker = str(tmp_path / "ran").encode()
    # {b"data": posix.mkdir(marker)}, written opcode by opcode
    arg = b"X" + len(marker).to_bytes(4, "little") + marker
    path.write_bytes(b"\x80\x02}U\x04data" + b"cposix\nmkdir\n" + arg + b"\x85Rs.")
    message = dataset_error(load_cifar10, str(tmp_path), "test", False)
    assert str(path) in message and "posix.mkdir" in message and not (tmp_path / "ran").exists()


# --- CIFAR-100 --------------------------------------------------------------------------------


@pytest.mark.parametrize("targets, index, count", [("coarse", 2, 20), ("fine", 1, 100), (Cifar100Targets.fine, 1, 100), (Cifar100Targets.coarse, 2, 20)])
def test_cifar100_coarse_and_fine_labels(tmp_path, targets, index, count):
    written = formats.write_cifar100(tmp_path)
    data = load_cifar100(str(tmp_path), "all", False, targets)
    check_dataset(data, *cat(written, "train", "test", index=index))
    kind = "coarse" if count == 20 else "fine"
    assert data.num_classes == count and data.class_names[3] == f"{kind}3" and data.info["targets"] == kind


def test_cifar100_splits(tmp_path):
    written = formats.write_cifar100(tmp_path, n_train=5, n_test=3)
    check_dataset(load_cifar100(str(tmp_path), "test", False, "fine"), *cat(written, "test"))
    assert len(load_cifar100(str(tmp_path), "train", False, "coarse")) == 5


def test_cifar100_unknown_targets_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="dataset.targets"):
        load_cifar100(str(tmp_path), "all", False, "medium")


def test_cifar100_missing_files_and_keys(tmp_path):
    message = dataset_error(load_cifar100, str(tmp_path), "all", False, "coarse")
    assert str(tmp_path / "cifar-100-python") in message and "train, test, meta" in message and "dataset.root" in message
    formats.write_cifar100(tmp_path)
    path = tmp_path / "cifar-100-python/train"
    formats.write_pickle(path, {"data": np.zeros((1, 3072), np.uint8), "fine_labels": [3]})
    assert "missing keys coarse_labels" in dataset_error(load_cifar100, str(tmp_path), "train", False, "coarse")
    assert len(load_cifar100(str(tmp_path), "train", False, "fine")) == 1  # fine does not need coarse
    formats.write_pickle(path, {"data": np.zeros((1, 3072), np.uint8), "coarse_labels": [20]})
    assert "must lie in 0..19, found 20" in dataset_error(load_cifar100, str(tmp_path), "train", False, "coarse")


# --- STL-10 -----------------------------------------------------------------------------------


@pytest.mark.parametrize("split, parts", [("all", ("train", "test")), ("train", ("train",)), ("test", ("test",))])
def test_stl10_splits_round_trip_exactly(tmp_path, split, parts):
    written = formats.write_stl10(tmp_path, n_train=3, n_test=2)
    data = load_stl10(str(tmp_path), split, False, False)
    check_dataset(data, *cat(written, *parts))
    assert data.images.shape[1:] == (3, 96, 96) and data.unlabeled is None
    assert data.class_names == formats.STL10_NAMES


def test_stl10_planes_are_column_major(tmp_path):
    formats.write_stl10(tmp_path)
    folder = tmp_path / "stl10_binary"
    raw = np.zeros((1, 3, 96, 96), np.uint8)
    raw[0, 1, 10, 70] = 99  # as stored: green plane, column 10, row 70
    (folder / "test_X.bin").write_bytes(raw.tobytes())
    (folder / "test_y.bin").write_bytes(bytes([10]))
    data = load_stl10(str(tmp_path), "test", False, False)
    assert data.images[0, 1, 70, 10] == 99 and int(data.images.sum()) == 99
    assert data.labels.tolist() == [9]  # stored 1-based


def test_stl10_unlabeled_images_are_training_extras_only(tmp_path):
    written = formats.write_stl10(tmp_path, n_train=3, n_test=2, n_unlabeled=4)
    data = load_stl10(str(tmp_path), "all", False, True)
    check_dataset(data, *cat(written, "train", "test"))
    assert data.unlabeled.shape == (4, 3, 96, 96) and data.unlabeled.is_contiguous()
    np.testing.assert_array_equal(data.unlabeled.numpy(), written["unlabeled"])
    assert len(data) == 5 and len(data.train_images()) == 9


def test_stl10_unlabeled_file_needed_only_when_asked(tmp_path):
    formats.write_stl10(tmp_path)
    assert load_stl10(str(tmp_path), "all", False, False).unlabeled is None
    message = dataset_error(load_stl10, str(tmp_path), "all", False, True)
    assert str(tmp_path / "stl10_binary") in message and "unlabeled_X.bin" in message and "train_X.bin" not in message


def test_stl10_missing_files_name_folder_files_and_fix(tmp_path):
    message = dataset_error(load_stl10, str(tmp_path), "test", False, False)
    assert str(tmp_path / "stl10_binary") in message and "test_X.bin, test_y.bin, class_names.txt" in message
    assert "train_X.bin" not in message and "dataset.download=true" in message


def test_stl10_truncated_images_and_wrong_labels_are_named(tmp_path):
    formats.write_stl10(tmp_path, n_train=3)
    folder = tmp_path / "stl10_binary"
    truncate(folder / "train_X.bin", 3 * 96 * 96 * 2 + 5)
    message = dataset_error(load_stl10, str(tmp_path), "train", False, False)
    assert str(folder / "train_X.bin") in message and "multiple of 27648" in message
    formats.write_stl10(tmp_path, n_train=3)
    (folder / "train_y.bin").write_bytes(bytes([1, 2]))
    message = dataset_error(load_stl10, str(tmp_path), "train", False, False)
    assert str(folder / "train_y.bin") in message and "3 images but 2 labels" in message
    (folder / "train_y.bin").write_bytes(bytes([1, 0, 2]))
    assert "must lie in 1..10, found 0" in dataset_error(load_stl10, str(tmp_path), "train", False, False)
    (folder / "train_y.bin").write_bytes(bytes([1, 11, 2]))
    assert "found 11" in dataset_error(load_stl10, str(tmp_path), "train", False, False)


def test_stl10_bad_class_names_are_named(tmp_path):
    formats.write_stl10(tmp_path)
    (tmp_path / "stl10_binary/class_names.txt").write_text("cat\ndog\n")
    assert "expected 10 class names, found 2" in dataset_error(load_stl10, str(tmp_path), "test", False, False)


# --- ImageNet-Dog -----------------------------------------------------------------------------


def expected_dog(path: Path, size: int) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)).transpose(2, 0, 1)


@pytest.mark.parametrize("train_folder", [False, True])
def test_imagenet_dog_reads_either_layout(tmp_path, train_folder):
    paths = formats.write_imagenet_dog(tmp_path, per_class=3, train_folder=train_folder)
    data = load_imagenet_dog(str(tmp_path), "all", False, 8)
    assert data.images.shape == (45, 3, 8, 8) and data.images.dtype == torch.uint8
    assert data.labels.tolist() == [label for label in range(15) for _ in range(3)]
    assert data.class_names[0] == "Maltese" and data.class_names[-1] == "chow" and data.num_classes == 15
    np.testing.assert_array_equal(data.images.numpy(), np.stack([expected_dog(p, 8) for p in paths]))


def test_imagenet_dog_resizes_without_swapping_height_and_width(tmp_path):
    formats.write_imagenet_dog(tmp_path, per_class=3)
    data = load_imagenet_dog(str(tmp_path), "train", False, 6)
    # image 2 of breed 0 is the PNG (lossless): top half colour c, bottom half 255 - c
    c = np.asarray([0, 255, 110])
    np.testing.assert_array_equal(data.images[2, :, 0, :].numpy(), np.repeat(c[:, None], 6, axis=1))
    np.testing.assert_array_equal(data.images[2, :, -1, :].numpy(), np.repeat(255 - c[:, None], 6, axis=1))


def test_imagenet_dog_cache_is_written_and_reused(tmp_path, monkeypatch):
    formats.write_imagenet_dog(tmp_path, per_class=1)
    first = load_imagenet_dog(str(tmp_path), "all", False, 8)
    cache = tmp_path / ".clusterbench_cache" / "imagenet_dog_8.npz"
    assert cache.is_file() and sorted(p.suffix for p in cache.parent.iterdir()) == [".npy", ".npz"]  # no temp file left

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded despite the cache")

    monkeypatch.setattr(imagenet_dog.Image, "open", no_decoding)
    second = load_imagenet_dog(str(tmp_path), "all", False, 8)
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    with pytest.raises(AssertionError, match="decoded"):
        load_imagenet_dog(str(tmp_path), "all", False, 12)  # another size: another cache


def test_imagenet_dog_cache_is_rebuilt_when_the_files_change(tmp_path):
    formats.write_imagenet_dog(tmp_path, per_class=1)
    assert len(load_imagenet_dog(str(tmp_path), "all", False, 8)) == 15
    formats.dog_image(3, 9).save(tmp_path / formats.DOG_WNIDS[3] / "extra.jpeg")
    data = load_imagenet_dog(str(tmp_path), "all", False, 8)
    assert len(data) == 16 and data.labels.tolist().count(3) == 2


def test_imagenet_dog_broken_cache_is_ignored(tmp_path):
    formats.write_imagenet_dog(tmp_path, per_class=1)
    cache = tmp_path / ".clusterbench_cache" / "imagenet_dog_8.npz"
    cache.parent.mkdir()
    cache.write_bytes(b"not a zip file")
    assert len(load_imagenet_dog(str(tmp_path), "all", False, 8)) == 15


def test_imagenet_dog_read_only_root_skips_the_cache(tmp_path, monkeypatch, caplog):
    formats.write_imagenet_dog(tmp_path, per_class=1)

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(imagenet_dog.Path, "mkdir", read_only)
    with caplog.at_level(logging.WARNING):
        data = load_imagenet_dog(str(tmp_path), "all", False, 8)
    assert len(data) == 15 and not (tmp_path / ".clusterbench_cache").exists()
    assert "cannot write the cache" in caplog.text


def test_imagenet_dog_corrupt_image_is_named(tmp_path):
    paths = formats.write_imagenet_dog(tmp_path, per_class=2)
    truncate(paths[5], 40)
    message = dataset_error(load_imagenet_dog, str(tmp_path), "all", False, 8)
    assert f"corrupt dataset file {paths[5]}" in message and "replace or delete it" in message
    assert not (tmp_path / ".clusterbench_cache").exists()


def test_imagenet_dog_missing_folders_are_named(tmp_path):
    message = dataset_error(load_imagenet_dog, str(tmp_path), "all", False, 8)
    assert str(tmp_path) in message and "n02085936" in message and "n02112137" in message and "dataset.root" in message
    formats.write_imagenet_dog(tmp_path, per_class=1, wnids=formats.DOG_WNIDS[:14])
    message = dataset_error(load_imagenet_dog, str(tmp_path), "all", False, 8)
    assert "n02112137" in message and "n02085936" not in message


def test_imagenet_dog_has_no_test_split_and_no_download(tmp_path):
    formats.write_imagenet_dog(tmp_path, per_class=1)
    with pytest.raises(ConfigError, match="dataset.split"):
        load_imagenet_dog(str(tmp_path), "test", False, 8)
    message = dataset_error(load_imagenet_dog, str(tmp_path), "all", True, 8)
    assert "cannot be downloaded automatically" in message and str(tmp_path) in message and "dataset.download=false" in message
    with pytest.raises(ConfigError, match="dataset.image_size"):
        load_imagenet_dog(str(tmp_path), "all", False, 0)


def test_gz_helper_writes_what_the_reader_expects(tmp_path):
    path = formats.write_idx(tmp_path / "x", np.arange(6, dtype=np.uint8).reshape(2, 3), gz=True)
    assert gzip.decompress(path.read_bytes())[:4] == bytes([0, 0, 8, 2])
