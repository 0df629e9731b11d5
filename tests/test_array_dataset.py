"""``dataset=array``: images held in a .npy / .npz file, with optional labels and names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from clusterbench.data.array import load_array
from clusterbench.errors import ConfigError, DatasetError


def npz(tmp_path: Path, **arrays) -> str:
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return str(path)


def error(exc: type, *args, **kwargs) -> str:
    with pytest.raises(exc) as info:
        load_array(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_greyscale_images_with_any_integer_labels_and_names(tmp_path):
    images = np.arange(4 * 5 * 6, dtype=np.uint8).reshape(4, 5, 6)  # N×H×W
    path = npz(tmp_path, images=images, labels=np.asarray([9, -1, 9, 3]), names=np.asarray(["a", "b", "c", "d"]))
    data = load_array(path)
    assert data.images.shape == (4, 1, 5, 6) and data.images.dtype == torch.uint8
    np.testing.assert_array_equal(data.images[:, 0].numpy(), images)
    assert data.labels.tolist() == [2, 0, 2, 1] and data.class_names == ["-1", "3", "9"]
    assert data.names == ["a", "b", "c", "d"] and data.split == "all" and data.info["source"] == path


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_channel_last_and_channel_first_colour(tmp_path, layout):
    nchw = np.random.default_rng(0).integers(0, 256, (3, 3, 4, 7), dtype=np.uint8)
    stored = nchw.transpose(0, 2, 3, 1) if layout == "NHWC" else nchw
    data = load_array(npz(tmp_path, images=stored))
    np.testing.assert_array_equal(data.images.numpy(), nchw)
    assert data.images.is_contiguous() and data.labels is None and data.names is None


def test_single_channel_last_axis_and_npy_files(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, (2, 6, 6, 1), dtype=np.uint8)
    np.save(tmp_path / "x.npy", images)
    data = load_array(str(tmp_path / "x.npy"))
    assert data.images.shape == (2, 1, 6, 6) and data.labels is None and data.class_names == []
    np.testing.assert_array_equal(data.images[:, 0].numpy(), images[..., 0])


def test_float_images_in_unit_range_are_scaled_and_rounded(tmp_path):
    images = np.asarray([[[0.0, 1.0], [0.5, 0.2]]], dtype=np.float32)
    data = load_array(npz(tmp_path, images=images))
    assert data.images[0, 0].tolist() == [[0, 255], [128, 51]]


def test_byte_string_names(tmp_path):
    data = load_array(npz(tmp_path, images=np.zeros((2, 3, 3), np.uint8), names=np.asarray([b"x", b"y"])))
    assert data.names == ["x", "y"]


@pytest.mark.parametrize(
    "arrays, expected",
    [
        ({"images": np.zeros((4, 3), np.uint8)}, "expected N×H×W"),
        ({"images": np.zeros((2, 5, 5, 5), np.uint8)}, "no channel axis of 1 or 3"),
        ({"images": np.zeros((2, 3, 3), np.int64)}, "images are int64"),
        ({"images": np.linspace(-0.5, 2, 18).reshape(2, 3, 3)}, "found -0.5..2"),
        ({"images": np.full((2, 3, 3), np.nan)}, "NaN"),
        ({"images": np.zeros((0, 3, 3), np.uint8)}, "hold no pixels"),
        ({"images": np.zeros((2, 3, 3), np.uint8), "labels": np.asarray([0, 1, 1])}, "2 images but labels of shape (3,)"),
        ({"images": np.zeros((2, 3, 3), np.uint8), "labels": np.asarray([0.0, 1.0])}, "not integers"),
        ({"images": np.zeros((2, 3, 3), np.uint8), "labels": np.asarray([4, 4])}, "drop the labels key"),
        ({"images": np.zeros((2, 3, 3), np.uint8), "names": np.asarray(["a"])}, "2 images but names of shape (1,)"),
        ({"images": np.zeros((2, 3, 3), np.uint8), "names": np.asarray([1, 2])}, "not strings"),
        ({"pixels": np.zeros((2, 3, 3), np.uint8), "y": np.zeros(2)}, "no 'images' key (it has pixels, y)"),
    ],
)
def test_bad_contents_are_one_line_naming_the_file(tmp_path, arrays, expected):
    path = npz(tmp_path, **arrays)
    message = error(DatasetError, path)
    assert path in message and expected in message


def test_object_arrays_are_refused_without_unpickling(tmp_path):
    np.save(tmp_path / "o.npy", np.asarray([{"a": 1}, None], dtype=object), allow_pickle=True)
    message = error(DatasetError, str(tmp_path / "o.npy"))
    assert "object array" in message and "o.npy" in message


def test_missing_and_foreign_files(tmp_path):
    message = error(DatasetError, str(tmp_path / "nope.npz"))
    assert "does not exist" in message and "dataset.path=FILE" in message
    (tmp_path / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n...")
    assert "not a .npy or .npz file" in error(DatasetError, str(tmp_path / "a.png"))


def test_config_keys(tmp_path):
    assert error(ConfigError).startswith("dataset.path: set it to your .npy or .npz file")
    path = npz(tmp_path, images=np.zeros((2, 3, 3), np.uint8))
    assert error(ConfigError, path, root="/data").startswith("dataset.root: not used by array")
    assert error(ConfigError, path, split="test").startswith("dataset.split")


def test_cli_clusters_an_array(run_cli, tmp_path):
    images = np.zeros((12, 6, 6), np.uint8)
    images[6:] = 255
    path = npz(tmp_path, images=images, labels=np.repeat([7, 8], 6))
    r = run_cli("method=kmeans", "dataset=array", f"dataset.path={path}")
    assert r.code == 0, r.err
    assert r.metrics()["acc"] == 1.0 and r.metrics()["n_samples"] == 12
