"""data.placement: images on the device, or on the host with each batch copied ahead, give the
same run; a memory-mapped image array works as the host store."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clusterbench.data.placement import ImageStore, resolve_placement
from clusterbench.distributed import DistInfo
from clusterbench.engine import embed_dataset
from clusterbench.errors import ConfigError
from conftest import same_losses

TINY = ["method=moco", "dataset=synthetic", "dataset.num_samples=96", "hardware=cpu", "backbone=strided", "backbone.widths=[8,16]",
        "method.queue_size=64", "method.head_hidden=32", "method.feature_dim=16", "trainer.batch_size=32", "trainer.epochs=2",
        "trainer.eval_every=1", "hardware.threads=1"]


def test_host_placement_gives_the_run_device_placement_gives(run_cli):
    on_device = run_cli(*TINY, "data.placement=device")
    on_host = run_cli(*TINY, "data.placement=host")
    assert on_device.code == on_host.code == 0, on_host.err
    assert on_host.losses() == same_losses(on_device.losses())
    assert np.array_equal(np.load(on_host.run_dir / "assignments.npy"), np.load(on_device.run_dir / "assignments.npy"))
    assert on_host.metrics()["config"]["data"]["placement"] == "host"


def test_auto_is_device_on_a_cpu_and_bad_values_are_named():
    assert resolve_placement("auto", 10**12, torch.device("cpu")) == "device"
    assert resolve_placement("host", 1, torch.device("cpu")) == "host"
    with pytest.raises(ConfigError, match="data.placement"):
        resolve_placement("disk", 1, torch.device("cpu"))


def test_a_wrong_placement_on_the_command_line_is_one_line(run_cli):
    r = run_cli(*TINY, "data.placement=disk")
    assert r.code == 2 and r.err.startswith("error: data.placement") and r.err.count("\n") == 1, r.err


def test_a_memory_mapped_array_serves_batches_and_the_embedding_pass(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (50, 1, 8, 8), dtype=np.uint8)
    path = tmp_path / "images.npy"
    np.save(path, images)
    mapped = torch.from_numpy(np.load(path, mmap_mode="r+"))  # read from the file as pages are touched
    store = ImageStore(mapped, torch.device("cpu"), "host")
    assert store.placement == "host" and store.images.data_ptr() == mapped.data_ptr()  # no copy into RAM
    rows = torch.tensor([3, 0, 49, 7])
    feed = store.feed(lambda i: rows[2 * i : 2 * i + 2], 2)
    assert torch.equal(torch.cat([feed.get(0), feed.get(1)]), torch.from_numpy(images[[3, 0, 49, 7]]))
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))
    from_map = embed_dataset(net, store.images, [0.5], [0.25], 16, DistInfo())
    in_ram = embed_dataset(net, torch.from_numpy(images), [0.5], [0.25], 16, DistInfo())
    assert torch.equal(from_map, in_ram)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the copy-ahead path needs CUDA")
def test_the_copy_ahead_feed_delivers_every_batch_in_order():
    images = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    store = ImageStore(images, torch.device("cuda"), "host")
    order = torch.randperm(64)
    feed = store.feed(lambda i: order[8 * i : 8 * i + 8], 8)
    got = torch.cat([feed.get(i).cpu() for i in range(8)])
    assert torch.equal(got, images[order])

