"""Every deep method runs a few steps end to end through the CLI, in each of its variants."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from clusterbench.methods.ae import Autoencoder, ConvDecoder
from clusterbench.methods.deep import InputShape

SMALL = ["dataset=synthetic", "dataset.num_samples=96", "hardware=cpu", "trainer.batch_size=32", "trainer.epochs=2", "trainer.eval_every=1"]
MOCO = ["method=moco", "method.queue_size=64", "method.head_hidden=32", "method.feature_dim=16"]
STRIDED = ("backbone=strided", "backbone.widths=[8,16]")


@pytest.mark.parametrize(
    "extra",
    [
        STRIDED,
        (*STRIDED, "method.symmetric=true", "method.split_bn=4", "method.queue_size=50"),  # a queue the batch does not divide
        ("backbone=convnet", "backbone.channels=[4,8]", "backbone.hidden=16", "method.head_layers=1", "trainer.optimizer=lars"),
        ("backbone=mlp", "backbone.hidden=[32]", "trainer.optimizer=adam", "trainer.lr=0.001", "trainer.warmup_epochs=1", "trainer.grad_clip=1.0"),
        (*STRIDED, "dataset.channels=3", "dataset.image_size=16", "augment=mocov2", "trainer.channels_last=true", "trainer.precision=bf16"),
    ],
    ids=["default", "symmetric-splitbn-odd-queue", "convnet-lars", "mlp-adam-warmup-clip", "rgb-mocov2-channels_last-bf16"],
)
def test_moco_runs_a_few_steps(run_cli, extra):
    r = run_cli(*SMALL, *MOCO, *extra)
    assert r.code == 0, r.err
    m = r.metrics()
    assert m["method"] == "moco" and m["n_samples"] == 96 and 0 <= m["acc"] <= 1
    assert m["method_info"]["steps"] == 6
    history = [json.loads(line) for line in (r.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(rec["loss"]) for rec in history) and len(history) == 2


@pytest.mark.parametrize(
    "extra",
    [
        ("backbone.hidden=[32]", "method.decoder_hidden=[32]"),
        ("backbone.hidden=[32]", "method.decoder_hidden=[32]", "method.cluster=kmeans"),
        ("backbone=strided", "backbone.widths=[8,16]", "method.decoder=conv", "method.gmm_covariance=diag"),
        ("backbone.hidden=[32]", "method.augment_input=true"),
    ],
    ids=["mlp-gmm", "mlp-kmeans", "conv-gmm-diag", "augmented-input"],
)
def test_autoencoder_runs_a_few_steps(run_cli, extra):
    r = run_cli(*SMALL, "method=ae", "trainer.optimizer=adam", "trainer.lr=0.001", *extra)
    assert r.code == 0, r.err
    m = r.metrics()
    assert m["method"] == "ae" and m["n_clusters"] == 3 and 0 <= m["acc"] <= 1


def test_autoencoder_loss_falls_and_reconstructs():
    """Adam on MSE must bring the reconstruction error down on a fixed batch."""
    torch.manual_seed(0)
    from clusterbench.backbones.mlp import MLP

    ae = Autoencoder(embedding_dim=4, decoder_hidden=[32])
    ae.model = ae.setup(MLP(in_channels=1, image_size=8, hidden=[32]), InputShape(1, 8))
    x = torch.randn(16, 1, 8, 8)
    from clusterbench.methods.deep import Batch

    opt = torch.optim.Adam(ae.model.parameters(), lr=1e-2)
    first = None
    for step in range(200):
        loss = ae.training_step(Batch([x], torch.arange(16), 0, step))["loss"]
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.3 * first
    assert ae.embed(x).shape == (16, 4)


@pytest.mark.parametrize("size", [8, 28, 32, 33])
def test_conv_decoder_gives_back_the_image_size(size):
    decoder = ConvDecoder(5, InputShape(3, size))
    assert decoder(torch.randn(2, 5)).shape == (2, 3, size, size)


def test_moco_sweep_names_each_job_folder_by_its_overrides(run_cli, tmp_path):
    sweep = tmp_path / "sweep"
    r = run_cli("-m", *SMALL, *MOCO, *STRIDED, "trainer.epochs=1", "method.queue_size=16,32", "method.momentum=0.9,0.99", f"hydra.sweep.dir={sweep}")
    assert r.code == 0, r.err
    names = sorted(p.parent.name for p in sweep.glob("*/metrics.json"))
    assert len(names) == 4
    assert all("method.momentum=" in n and "method.queue_size=" in n for n in names)
    assert json.loads((sweep / names[0] / "metrics.json").read_text())["config"]["method"]["momentum"] in (0.9, 0.99)
