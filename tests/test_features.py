"""The classical methods' feature pass: batches written into one preallocated output."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from clusterbench.backbones.pixels import Pixels
from clusterbench.methods import classical
from clusterbench.methods.base import RunContext


class HalfWidth(nn.Module):
    """A backbone whose output is not float32: the features come back as float32 anyway."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1)[:, ::2].to(torch.float16)


@pytest.mark.parametrize("backbone", [Pixels(3, 4), HalfWidth()])
@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 20])
def test_batched_features_equal_one_pass(monkeypatch, backbone, n):
    monkeypatch.setattr(classical, "FEATURE_BATCH", 8)  # several batches, a ragged last one
    images = torch.randint(0, 256, (n, 3, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(n))
    ctx = RunContext(device=torch.device("cpu"), seed=0, backbone=backbone, progress=False)
    features = classical.extract_features(images, ctx)
    assert features.dtype == torch.float32 and torch.equal(features, backbone(images).float())


def test_features_of_a_memory_mapped_array(tmp_path):
    import numpy as np

    path = tmp_path / "images.npy"
    np.save(path, np.arange(5 * 3 * 4 * 4, dtype=np.uint8).reshape(5, 3, 4, 4))
    mapped = torch.from_numpy(np.load(path, mmap_mode="c"))
    ctx = RunContext(device=torch.device("cpu"), seed=0, backbone=Pixels(3, 4), progress=False)
    assert torch.equal(classical.extract_features(mapped, ctx), mapped.flatten(1).float() / 255.0)
