"""``dataset=folder``: a folder of the user's own images, labelled by class folders or not.

Every image here is a few pixels, written by the test with PIL (PNG when the pixels must be
exact, JPEG where the format matters), so the expected arrays are known by hand.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clusterbench.data import images
from clusterbench.data.digits import load_digits
from clusterbench.data.folder import load_folder
from clusterbench.data.images import CACHE_DIR, DecodeOptions, decode_files, decode_image, find_image_files
from clusterbench.data.synthetic import load_synthetic
from clusterbench.errors import ConfigError, DatasetError

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def save(path: Path, pixels, fmt: str = "PNG") -> Path:
    """Write H×W (greyscale) or H×W×3 uint8 ``pixels`` (or a colour for an 8×8 image) to ``path``."""
    if isinstance(pixels, tuple):
        pixels = np.full((8, 8, 3), pixels, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(path, format=fmt, quality=95)
    return path


def chw(pixels) -> np.ndarray:
    a = np.asarray(pixels, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def error(exc: type, fn, *args, **kwargs) -> str:
    """The one-line message of the ``exc`` that ``fn`` raises."""
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.fixture
def labelled(tmp_path) -> Path:
    """root/cat/{a.png, sub/b.PNG}, root/dog/c.png, plus files the loader must skip."""
    root = tmp_path / "pets"
    save(root / "cat" / "a.png", RED)
    save(root / "cat" / "sub" / "b.PNG", GREEN)
    save(root / "dog" / "c.png", BLUE)
    save(root / "dog" / ".hidden.png", RED)
    save(root / ".thumbnails" / "x.png", RED)
    (root / "dog" / "notes.txt").write_text("not an image")
    return root


# --- layout ---------------------------------------------------------------------------------


def test_class_folders_give_labels_names_and_pixels(labelled):
    data = load_folder(str(labelled))
    assert data.class_names == ["cat", "dog"] and data.labels.tolist() == [0, 0, 1]
    assert data.names == ["cat/a.png", "cat/sub/b.PNG", "dog/c.png"]  # recursive, any case, hidden skipped
    assert data.images.dtype == torch.uint8 and data.images.shape == (3, 3, 8, 8)
    for image, colour in zip(data.images, (RED, GREEN, BLUE)):
        assert (image.numpy() == np.asarray(colour, dtype=np.uint8)[:, None, None]).all()
    assert data.split == "all" and data.info["skipped"] == 0 and data.info["source"] == str(labelled)


def test_flat_folder_is_unlabelled(tmp_path):
    save(tmp_path / "b.png", GREEN)
    save(tmp_path / "a.png", RED)
    data = load_folder(str(tmp_path))
    assert data.labels is None and data.class_names == [] and not data.has_labels
    assert data.names == ["a.png", "b.png"]


def test_labels_false_ignores_class_folders(labelled):
    save(labelled / "loose.png", RED)  # allowed without labels
    data = load_folder(str(labelled), labels=False)
    assert data.labels is None and data.class_names == []
    assert data.names == ["cat/a.png", "cat/sub/b.PNG", "dog/c.png", "loose.png"]


def test_files_are_found_recursively_by_any_case_extension(tmp_path):
    for i, name in enumerate(["x.JPG", "y.jpeg", "d/z.Png", "d/e/w.bmp", "v.gif", "u.TIFF", "t.tif", "s.webp"]):
        fmt = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "bmp": "BMP", "gif": "GIF", "tiff": "TIFF", "tif": "TIFF", "webp": "WEBP"}
        save(tmp_path / name, np.full((4, 4, 3), 10 * i, dtype=np.uint8), fmt[name.rsplit(".", 1)[1].lower()])
    (tmp_path / "r.npy").write_bytes(b"")
    names = [f.name for f in find_image_files(tmp_path)]
    assert names == ["d/e/w.bmp", "d/z.Png", "s.webp", "t.tif", "u.TIFF", "v.gif", "x.JPG", "y.jpeg"]
    assert len(load_folder(str(tmp_path), labels=False)) == 8


# --- channels, sizes and resizing ----------------------------------------------------------


def test_all_greyscale_gives_one_channel_and_mixed_gives_three(tmp_path):
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    save(tmp_path / "a" / "g.png", grey)
    save(tmp_path / "b" / "h.png", grey[::-1])
    data = load_folder(str(tmp_path))
    assert data.images.shape == (2, 1, 8, 8)
    np.testing.assert_array_equal(data.images[0, 0].numpy(), grey)
    save(tmp_path / "b" / "i.png", RED)
    data = load_folder(str(tmp_path))
    assert data.images.shape == (3, 3, 8, 8)
    np.testing.assert_array_equal(data.images[0].numpy(), np.stack([grey] * 3))  # grey replicated, as PIL's convert("RGB")


def test_channels_can_be_forced(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    save(tmp_path / "a.png", rgb)
    save(tmp_path / "b.png", rgb[:, :, 0])
    one = load_folder(str(tmp_path), channels=1)  # an int, as Python callers write it
    assert one.images.shape == (2, 1, 8, 8)
    np.testing.assert_array_equal(one.images[0, 0].numpy(), np.asarray(Image.fromarray(rgb).convert("L")))
    three = load_folder(str(tmp_path), channels="3")
    assert three.images.shape == (2, 3, 8, 8)
    np.testing.assert_array_equal(three.images[1].numpy(), np.stack([rgb[:, :, 0]] * 3))


def test_sixteen_bit_greyscale_is_scaled_not_clipped(tmp_path):
    Image.fromarray(np.asarray([[0, 257 * 100], [65535, 257]], dtype=np.uint16)).save(tmp_path / "deep.png")
    data = load_folder(str(tmp_path))
    assert data.images[0, 0].tolist() == [[0, 100], [255, 1]]


def bars() -> np.ndarray:
    """8 wide × 4 high: rows 0–1 green, rows 2–3 blue, with red bars in columns 0–1 and 6–7."""
    pixels = np.empty((4, 8, 3), dtype=np.uint8)
    pixels[:2], pixels[2:] = GREEN, BLUE
    pixels[:, :2] = pixels[:, 6:] = RED
    return pixels


def test_crop_keeps_the_centre_square(tmp_path):
    save(tmp_path / "bars.png", bars())
    data = load_folder(str(tmp_path), image_size=4)  # resize="crop" is the default
    np.testing.assert_array_equal(data.images[0].numpy(), chw(bars()[:, 2:6]))  # short side is 4 already: no resampling


def test_pad_fits_the_long_side_with_black_borders(tmp_path):
    save(tmp_path / "bars.png", bars())
    data = load_folder(str(tmp_path), image_size=8, resize="pad")
    expected = np.zeros((8, 8, 3), dtype=np.uint8)
    expected[2:6] = bars()
    np.testing.assert_array_equal(data.images[0].numpy(), chw(expected))


def test_stretch_squeezes_the_whole_image(tmp_path):
    path = save(tmp_path / "bars.png", bars())
    data = load_folder(str(tmp_path), image_size=4, resize="stretch")
    with Image.open(path) as im:
        np.testing.assert_array_equal(data.images[0].numpy(), chw(im.resize((4, 4), Image.Resampling.BILINEAR)))
    red = data.images[0, 0].float() - data.images[0, 1].float()
    assert (red[:, 0] > 100).all() and (red[:, 3] > 100).all()  # the red bars survive, squeezed (crop drops them)


def test_upscaling_and_jpeg_resize(tmp_path):
    save(tmp_path / "a.jpg", RED, "JPEG")
    data = load_folder(str(tmp_path), image_size=12)
    assert data.images.shape == (1, 3, 12, 12)
    assert (data.images[0, 0] > 240).all() and (data.images[0, 1:] < 15).all()


def test_native_sizes_must_agree(tmp_path):
    save(tmp_path / "a.png", RED)
    save(tmp_path / "b.png", np.zeros((6, 5, 3), dtype=np.uint8))
    message = error(DatasetError, load_folder, str(tmp_path))
    assert str(tmp_path / "a.png") in message and "8×8" in message
    assert str(tmp_path / "b.png") in message and "5×6" in message and "dataset.image_size=S" in message
    assert load_folder(str(tmp_path), image_size=6).images.shape == (2, 3, 6, 6)


def test_jpegs_decode_to_pils_pixels(tmp_path):
    """Native-size JPEGs take torchvision's libjpeg-turbo: it must give PIL's pixels exactly."""
    rng = np.random.default_rng(1)
    colour = save(tmp_path / "c.jpg", rng.integers(0, 256, (9, 11, 3), dtype=np.uint8), "JPEG")
    grey = save(tmp_path / "g.jpeg", rng.integers(0, 256, (9, 11), dtype=np.uint8), "JPEG")
    for path in (colour, grey):
        with Image.open(path) as im:
            expected = chw(im)
        pixels, is_grey = decode_image(str(path), DecodeOptions())
        np.testing.assert_array_equal(pixels, expected)
        assert is_grey == (path == grey)


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_parallel_pools_match_the_serial_decode(tmp_path, pool):
    rng = np.random.default_rng(2)
    for i in range(40):
        save(tmp_path / f"{i:02d}.png", rng.integers(0, 256, (5, 7, 3), dtype=np.uint8))
    (tmp_path / "17.png").write_bytes(b"broken")
    files = find_image_files(tmp_path)
    options = DecodeOptions(6, "pad", "auto")
    serial = decode_files(files, options, "test", pool="serial")
    parallel = decode_files(files, options, "test", pool=pool)
    np.testing.assert_array_equal(parallel.images, serial.images)
    assert parallel.kept.tolist() == serial.kept.tolist() == [i for i in range(40) if i != 17]
    assert [name for name, _ in parallel.bad] == ["17.png"]


# --- unreadable files -------------------------------------------------------------------------


def test_a_corrupt_image_is_named_with_the_fix(labelled):
    (labelled / "dog" / "c.png").write_bytes(b"\x89PNG not really")
    message = error(DatasetError, load_folder, str(labelled))
    assert str(labelled / "dog" / "c.png") in message and "dataset.skip_bad=true" in message
    assert not (labelled / CACHE_DIR).exists()


def test_several_corrupt_images_name_three_and_count_the_rest(tmp_path):
    for i in range(5):
        save(tmp_path / f"ok{i}.png", RED)
    for i in range(4):
        (tmp_path / f"bad{i}.jpg").write_bytes(b"garbage")
    message = error(DatasetError, load_folder, str(tmp_path))
    assert message.startswith("4 unreadable images") and "and 1 more" in message and "dataset.skip_bad=true" in message
    assert all(str(tmp_path / f"bad{i}.jpg") in message for i in range(3)) and "bad3" not in message


def test_skip_bad_leaves_them_out_and_counts_them(labelled, caplog):
    (labelled / "cat" / "a.png").write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        data = load_folder(str(labelled), skip_bad=True)
    assert data.names == ["cat/sub/b.PNG", "dog/c.png"] and data.labels.tolist() == [0, 1]
    assert data.info["skipped"] == 1 and "skipped 1 unreadable image" in caplog.text and "cat/a.png" in caplog.text
    # the cache remembers them: without skip_bad the cached load still refuses
    assert "dataset.skip_bad=true" in error(DatasetError, load_folder, str(labelled))
    assert load_folder(str(labelled), skip_bad=True).info["skipped"] == 1


def test_nothing_readable_is_an_error_even_with_skip_bad(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    assert "none of the 1 images" in error(DatasetError, load_folder, str(tmp_path), skip_bad=True)


# --- the cache ------------------------------------------------------------------------------------


def no_decoding(*args, **kwargs):
    raise AssertionError("decoded despite the cache")


def test_cached_load_decodes_nothing(labelled, monkeypatch):
    first = load_folder(str(labelled), image_size=4)
    cache = labelled / CACHE_DIR / "folder_4_crop_auto.npz"
    assert sorted(p.suffix for p in cache.parent.iterdir()) == [".npy", ".npz"]  # no temporary file left
    monkeypatch.setattr(images, "decode_image", no_decoding)
    monkeypatch.setattr(images.Image, "open", no_decoding)
    second = load_folder(str(labelled), image_size=4)
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    assert first.names == second.names and first.class_names == second.class_names
    assert len(load_folder(str(labelled), image_size=4, labels=False)) == 3  # labels are not part of the cache
    with pytest.raises(AssertionError, match="decoded"):
        load_folder(str(labelled), image_size=4, resize="pad")  # other options: another cache


def test_cache_follows_added_changed_and_removed_files(labelled):
    assert len(load_folder(str(labelled))) == 3
    save(labelled / "dog" / "d.png", RED)
    data = load_folder(str(labelled))
    assert data.names[-1] == "dog/d.png" and data.labels.tolist() == [0, 0, 1, 1]
    path = save(labelled / "dog" / "d.png", GREEN)
    os.utime(path, ns=(1, 1))  # a rewrite within the clock's resolution still differs in mtime
    assert data.images[-1, 1].max() == 0 and load_folder(str(labelled)).images[-1, 1].min() == 255
    path.unlink()
    assert load_folder(str(labelled)).names == ["cat/a.png", "cat/sub/b.PNG", "dog/c.png"]


def cache_files(root: Path, name: str = "folder_native_auto") -> tuple[Path, list[Path]]:
    """The cache's small ``.npz`` and its images' ``.npy`` files under ``root``."""
    return root / CACHE_DIR / f"{name}.npz", sorted((root / CACHE_DIR).glob(f"{name}.*.npy"))


def test_cached_images_are_memory_mapped_with_identical_pixels(labelled, monkeypatch):
    fresh = load_folder(str(labelled))
    meta, (array,) = cache_files(labelled)
    with np.load(meta) as small:
        assert "images" not in small.files  # the pixels live in the .npy alone
    monkeypatch.setattr(images, "decode_image", no_decoding)
    files = find_image_files(labelled)
    decoded = images.load_images(labelled, files[:3], DecodeOptions(), "folder_native_auto", "folder", False)
    assert isinstance(decoded.images, np.memmap) and Path(decoded.images.filename) == array
    assert decoded.images.flags.writeable  # copy-on-write: torch takes it without a read-only warning
    cached = load_folder(str(labelled))
    assert torch.equal(cached.images, fresh.images) and cached.names == fresh.names
    cached.images[0] = 7  # a write stays in this process
    assert torch.equal(load_folder(str(labelled)).images, fresh.images)


@pytest.mark.parametrize("damage", ["truncate", "delete", "garble"])
def test_a_damaged_image_array_is_rebuilt(labelled, caplog, damage):
    fresh = load_folder(str(labelled))
    _, (array,) = cache_files(labelled)
    if damage == "truncate":
        array.write_bytes(array.read_bytes()[:-10])
    elif damage == "delete":
        array.unlink()
    else:
        array.write_bytes(b"not an array")
    with caplog.at_level(logging.WARNING):
        again = load_folder(str(labelled))
    assert "decoding again" in caplog.text and torch.equal(again.images, fresh.images)
    _, (rebuilt,) = cache_files(labelled)
    assert np.array_equal(np.load(rebuilt), fresh.images.numpy())  # written anew


def test_an_old_one_file_cache_is_read_and_rewritten(labelled, monkeypatch):
    fresh = load_folder(str(labelled))
    meta, (array,) = cache_files(labelled)
    with np.load(meta) as small:
        old = {key: small[key] for key in small.files}
    np.savez(meta, images=np.load(array), **old)  # the layout before the .npy: the images inside the .npz
    array.unlink()
    monkeypatch.setattr(images, "decode_image", no_decoding)
    monkeypatch.setattr(images.Image, "open", no_decoding)
    assert torch.equal(load_folder(str(labelled)).images, fresh.images)  # read, not decoded
    _, arrays = cache_files(labelled)
    with np.load(meta) as small:
        assert arrays == [array] and "images" not in small.files  # and rewritten to be mapped next time


def test_a_rebuild_removes_the_old_image_array(labelled):
    load_folder(str(labelled))
    _, (before,) = cache_files(labelled)
    mapped = load_folder(str(labelled))  # maps ``before``
    save(labelled / "dog" / "d.png", RED)
    assert len(load_folder(str(labelled))) == 4
    _, after = cache_files(labelled)
    assert after != [before] and len(after) == 1
    assert len(mapped.images) == 3 and int(mapped.images[2, 2].max()) == 255  # a removed file stays readable where mapped


def test_read_only_root_warns_and_loads_without_cache(labelled, monkeypatch, caplog):
    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "mkdir", read_only)
    with caplog.at_level(logging.WARNING):
        assert len(load_folder(str(labelled))) == 3
    assert "cannot write the cache" in caplog.text and not (labelled / CACHE_DIR).exists()


# --- errors -----------------------------------------------------------------------------------


def test_no_images_lists_the_extensions_and_the_root(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    message = error(DatasetError, load_folder, str(tmp_path))
    assert str(tmp_path) in message and ".png" in message and ".jpeg" in message and ".webp" in message


def test_missing_root_names_the_path_and_the_key(tmp_path):
    message = error(DatasetError, load_folder, str(tmp_path / "nowhere"))
    assert str(tmp_path / "nowhere") in message and "dataset.root=PATH" in message
    assert error(ConfigError, load_folder, None).startswith("dataset.root: set it to the folder")


def test_one_class_folder_suggests_labels_false(tmp_path):
    save(tmp_path / "only" / "a.png", RED)
    message = error(DatasetError, load_folder, str(tmp_path))
    assert "one class folder (only)" in message and "dataset.labels=false" in message
    assert load_folder(str(tmp_path), labels=False).names == ["only/a.png"]


def test_loose_images_beside_class_folders_are_an_error(labelled):
    save(labelled / "stray.png", RED)
    message = error(DatasetError, load_folder, str(labelled))
    assert "stray.png" in message and "cat, dog" in message and "dataset.labels=false" in message


@pytest.mark.parametrize(
    "kwargs, key",
    [({"split": "test"}, "dataset.split"), ({"resize": "zoom"}, "dataset.resize"), ({"channels": "2"}, "dataset.channels"),
     ({"image_size": 0}, "dataset.image_size"), ({"download": True}, "dataset.download")],
)
def test_bad_options_name_their_key(labelled, kwargs, key):
    assert error(ConfigError, load_folder, str(labelled), **kwargs).startswith(f"{key}: ")


@pytest.mark.parametrize("loader, name", [(load_digits, "digits"), (load_synthetic, "synthetic")])
def test_a_root_given_to_datasets_without_files_is_refused(loader, name):
    message = error(ConfigError, loader, root="/my/images")
    assert message.startswith(f"dataset.root: not used by {name}") and "dataset=folder dataset.root=PATH" in message
    assert len(loader()) > 0


# --- config and command line -----------------------------------------------------------------


def test_config_takes_channels_from_the_command_line(compose):
    cfg = compose("dataset=folder", "dataset.root=/x", "dataset.channels=1", "dataset.resize=pad")
    assert cfg.dataset.channels == "1" and cfg.dataset.resize.value == "pad" and cfg.dataset.image_size is None
    assert compose("dataset=digits").dataset.root is None
    assert compose("dataset=imagenet_dog").dataset.resize.value == "stretch"


def test_cli_clusters_a_labelled_folder(run_cli, tmp_path):
    rng = np.random.default_rng(0)
    for i in range(6):
        save(tmp_path / "imgs" / "red" / f"{i}.png", np.clip(np.asarray(RED) + rng.integers(0, 30, (8, 8, 3)), 0, 255))
        save(tmp_path / "imgs" / "blue" / f"{i}.jpg", np.clip(np.asarray(BLUE) + rng.integers(0, 30, (8, 8, 3)), 0, 255), "JPEG")
    r = run_cli("method=kmeans", "dataset=folder", f"dataset.root={tmp_path / 'imgs'}")
    assert r.code == 0, r.err
    metrics = r.metrics()
    assert metrics["n_samples"] == 12 and metrics["acc"] == 1.0


def test_cli_refuses_a_root_for_digits(run_cli):
    r = run_cli("method=kmeans", "dataset=digits", "dataset.root=/my/images")
    assert r.code == 2 and "Traceback" not in r.err
    assert "error: dataset.root: not used by digits" in r.err and "dataset=folder" in r.err


def test_cli_without_a_root_says_which_key(run_cli):
    r = run_cli("method=kmeans", "dataset=folder")
    assert r.code == 2 and "error: dataset.root: set it to the folder holding your images" in r.err
