"""InfoGAN: the networks' shapes, the objective's parts by hand, the alternating D / G steps
over their own optimisers, and the engine's guarantees for a method that owns its optimisers
(checkpoint with both, resume, the NaN guard, precision)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from clusterbench.backbones.infogan import InfoGANBody, infogan_stages
from clusterbench.distributed import DistInfo
from clusterbench.errors import ConfigError
from clusterbench.methods import infogan as ig
from clusterbench.methods.deep import Batch, InputShape
from clusterbench.methods.infogan import InfoGAN, discriminator_loss, generator_loss, info_loss
from clusterbench.optim import ManualSteps, set_learning_rate
from conftest import same_losses

TINY = ["method=infogan", "dataset=synthetic", "dataset.num_samples=64", "hardware=cpu", "hardware.threads=1", "backbone.width=8",
        "backbone.hidden=32", "method.noise_dim=8", "trainer.batch_size=16", "trainer.eval_every=0",
        "trainer.lr=2e-4", "trainer.schedule=constant"]


def build(size: int = 28, channels: int = 1, k: int = 10, **kwargs) -> InfoGAN:
    method = InfoGAN(**kwargs)
    method.configure_clusters(k)
    method.model = method.setup(InfoGANBody(channels, size), InputShape(channels, size))
    return method


@pytest.mark.parametrize("size, channels, stages, map_size", [(28, 1, 2, 7), (8, 1, 2, 2), (32, 3, 2, 8), (96, 3, 4, 6), (30, 1, 2, 7)])
def test_generator_and_q_have_the_papers_shapes(size, channels, stages, map_size):
    method = build(size, channels)
    net = method.model
    assert net.backbone.stages == infogan_stages(size) == stages and net.backbone.map_size == map_size and net.backbone.out_dim == 1024
    latent, codes, continuous = method.sample_latent(4, torch.device("cpu"))
    assert latent.shape == (4, 62 + 10 + 2) and codes.shape == (4,) and continuous.shape == (4, 2)
    assert torch.equal(latent[:, 62:72], F.one_hot(codes, 10).float()) and bool((latent[:, :62].abs() <= 1).all())
    fake = net.generator(latent)
    assert fake.shape == (4, channels, size, size)
    d, q, mu = net.discriminate(fake)
    assert d.shape == (4,) and q.shape == (4, 10) and mu.shape == (4, 2)


def test_the_28_px_networks_are_the_papers_layers():
    net = build().model
    convs = [m for m in net.backbone.convs if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [(1, 64, (4, 4), (2, 2)), (64, 128, (4, 4), (2, 2))]
    assert [type(m).__name__ for m in net.backbone.convs] == ["Conv2d", "LeakyReLU", "Conv2d", "BatchNorm2d", "LeakyReLU"]  # no BN on the first
    assert net.backbone.fc[0].in_features == 128 * 7 * 7 and net.backbone.fc[0].out_features == 1024
    assert net.d_head.out_features == 1 and [m.out_features for m in net.q_head if isinstance(m, nn.Linear)] == [128, 12]
    g = [m for m in net.generator.net if isinstance(m, (nn.Linear, nn.ConvTranspose2d))]
    assert [(m.in_features, m.out_features) for m in g[:2]] == [(74, 1024), (1024, 7 * 7 * 128)]
    assert [(m.in_channels, m.out_channels, m.stride) for m in g[2:]] == [(128, 64, (2, 2)), (64, 1, (2, 2))]


def test_the_generator_makes_standardised_pixels_in_the_runs_units():
    method = InfoGAN()
    method.configure_clusters(3)
    net = method.setup(InfoGANBody(1, 8), InputShape(1, 8, (0.25,), (0.5,)))
    pixels = (net.generator(torch.randn(5, method.latent_dim)) * 0.5 + 0.25)  # back to [0, 1]
    assert bool((pixels >= 0).all()) and bool((pixels <= 1).all())


def test_gan_losses_by_hand():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    sig = lambda t: 1 / (1 + math.exp(-t))  # noqa: E731
    d = -(math.log(sig(2.0)) + math.log(sig(-1.0))) / 2 - (math.log(1 - sig(0.5)) + math.log(1 - sig(-3.0))) / 2
    g = -(math.log(sig(0.5)) + math.log(sig(-3.0))) / 2
    assert float(discriminator_loss(real, fake)) == pytest.approx(d, rel=1e-6)
    assert float(generator_loss(fake)) == pytest.approx(g, rel=1e-6)


def test_info_loss_against_a_direct_computation():
    torch.manual_seed(0)
    logits, means = torch.randn(4, 3), torch.randn(4, 2)
    codes, continuous = torch.tensor([0, 2, 1, 2]), torch.rand(4, 2) * 2 - 1
    total, categorical, gaussian = info_loss(logits, means, codes, continuous, continuous_weight=0.5)
    ce = 0.0
    nll = 0.0
    for i in range(4):
        z = [math.exp(v) for v in logits[i].tolist()]
        ce -= math.log(z[int(codes[i])] / sum(z))
        for j in range(2):  # −log N(c; μ, 1)
            nll += 0.5 * math.log(2 * math.pi) + 0.5 * (float(continuous[i, j]) - float(means[i, j])) ** 2
    assert float(categorical) == pytest.approx(ce / 4, rel=1e-6)
    assert float(gaussian) == pytest.approx(nll / 4, rel=1e-6)
    assert float(total) == pytest.approx(ce / 4 + 0.5 * nll / 4, rel=1e-6)
    # no continuous codes: the categorical term alone
    total, _, gaussian = info_loss(logits, means[:, :0], codes, continuous[:, :0])
    assert float(gaussian) == 0.0 and float(total) == pytest.approx(ce / 4, rel=1e-6)


def _steps(method: InfoGAN, grad_clip=None) -> ManualSteps:
    steps = ManualSteps(method.configure_optimizers(2e-4), torch.amp.GradScaler("cpu", enabled=False), grad_clip, lambda params: None)
    method.optimize = steps  # type: ignore[method-assign]
    return steps


@pytest.mark.parametrize("q_optimizer", ["discriminator", "generator"])
def test_each_step_moves_only_its_optimisers_networks(q_optimizer):
    torch.manual_seed(0)
    method = build(size=8, k=3, q_optimizer=q_optimizer, noise_dim=4)
    net = method.model
    steps = _steps(method)
    d_group = {id(p) for p in steps.optimizers["discriminator"].param_groups[0]["params"]}
    q_params = {id(p) for p in net.q_head.parameters()}
    assert (q_params <= d_group) == (q_optimizer == "discriminator")
    assert steps.optimizers["generator"].param_groups[0]["lr"] == pytest.approx(1e-3)  # 5 × D's

    snapshots, calls = [], []
    step = steps.__call__

    def spy(name, loss):
        before = {n: p.detach().clone() for n, p in net.named_parameters()}
        step(name, loss)
        calls.append(name)
        snapshots.append({n for n, p in net.named_parameters() if not torch.equal(p, before[n])})

    method.optimize = spy  # type: ignore[method-assign]
    out = method.training_step(Batch([torch.randn(6, 1, 8, 8)], torch.arange(6), 0, 0))
    assert calls == ["discriminator", "generator"]
    moved_d, moved_g = snapshots
    owner = "d" if q_optimizer == "discriminator" else "g"
    assert moved_d and all(n.startswith(("backbone.", "d_head.")) or (owner == "d" and n.startswith("q_head.")) for n in moved_d)
    assert moved_g and all(n.startswith("generator.") or (owner == "g" and n.startswith("q_head.")) for n in moved_g)
    assert {"loss", "d_loss", "g_loss", "info_loss", "mi_categorical", "q_code_acc"} <= set(out)
    assert all(p.requires_grad for p in net.parameters())  # D was frozen for G's step only


def test_manual_steps_zero_scale_clip_and_schedule_each_optimiser():
    a, b = nn.Linear(2, 1), nn.Linear(2, 1)
    opt_a = torch.optim.SGD(a.parameters(), lr=1.0)
    opt_b = torch.optim.SGD([{"params": b.parameters(), "lr_scale": 5.0}], lr=1.0)
    steps = ManualSteps({"a": opt_a, "b": opt_b}, torch.amp.GradScaler("cpu", enabled=False), 0.1, lambda params: None)
    set_learning_rate([opt_a, opt_b], 0.2)
    assert opt_a.param_groups[0]["lr"] == 0.2 and opt_b.param_groups[0]["lr"] == pytest.approx(1.0)
    a.weight.grad = torch.full_like(a.weight, 100.0)  # stale: zeroed before the backward
    before = torch.cat([p.detach().flatten() for p in a.parameters()])
    steps("a", (a(torch.ones(1, 2)) * 10).sum())  # gradient 10 per weight and bias, clipped to norm 0.1
    step = before - torch.cat([p.detach().flatten() for p in a.parameters()])
    assert float(torch.linalg.vector_norm(step)) == pytest.approx(0.2 * 0.1, rel=1e-5)
    assert b.weight.grad is None  # the other optimiser's network was not touched
    with pytest.raises(KeyError, match="no optimiser named 'c'"):
        steps("c", a(torch.ones(1, 2)).sum())
    state = steps.state_dict()
    assert set(state) == {"a", "b"} and state["b"]["param_groups"][0]["lr_scale"] == 5.0
    with pytest.raises(KeyError, match="the method builds"):
        steps.load_state_dict({"a": state["a"]})


def test_latents_are_drawn_for_the_global_batch_and_each_rank_keeps_its_rows():
    whole = build(size=8, k=3, noise_dim=4)
    whole.seed = 7
    everything = whole.sample_latent(6, torch.device("cpu"))
    for rank in (0, 1):
        part = build(size=8, k=3, noise_dim=4)
        part.seed, part.dist = 7, DistInfo(rank=rank, world_size=2)
        mine = part.sample_latent(3, torch.device("cpu"))
        for a, b in zip(mine, everything):
            assert torch.equal(a, b[rank * 3 : (rank + 1) * 3])


@pytest.mark.parametrize("key, value", [("method.q_optimizer", "q"), ("method.generator_lr_scale", "0"), ("method.continuous_codes", "-1"),
                                        ("method.beta1", "1.0"), ("backbone.leaky_slope", "2")])
def test_impossible_settings_are_one_line_errors(run_cli, key, value):
    r = run_cli(*TINY, "trainer.epochs=1", f"{key}={value}")
    assert r.code != 0 and key in r.err and "Traceback" not in r.err


def test_samples_are_a_row_per_code_with_the_noise_shared_down_each_column():
    method = build(size=8, k=3, noise_dim=4)
    method.model.eval()
    grid, label, title = method.samples(per_code=4)
    assert grid.shape == (3, 4, 1, 8, 8) and grid.dtype == np.uint8 and label.format(2) == "code 2"
    again, _, _ = method.samples(per_code=4)
    assert np.array_equal(grid, again)  # its own seeded stream: the training's latents are not consumed
    assert not np.array_equal(grid[0], grid[1])  # the code changes the image


def test_a_run_logs_both_players_and_reads_clusters_out_by_q(run_cli):
    r = run_cli(*TINY, "trainer.epochs=2", "trainer.eval_every=1", plots=True)
    assert (r.run_dir / "samples.png").exists()
    assert r.code == 0, r.err
    last = r.history()[-1]
    assert {"d_loss", "g_loss", "info_loss", "mi_categorical", "d_real", "d_fake", "q_code_acc", "acc", "kmeans_acc"} <= set(last)
    state = torch.load(r.run_dir / "checkpoint.pt", weights_only=True)
    assert set(state["optimizer"]) == {"discriminator", "generator"}
    assert state["optimizer"]["generator"]["param_groups"][0]["lr_scale"] == 5.0
    m = r.metrics()
    assert m["method_info"]["steps"] == 8 and 0 <= m["acc"] <= 1 and "kmeans_acc" in m["method_info"]
    assert m["plan"]["views"].startswith("none: the plain images")  # the run-start block says what D sees
    clusters = dict(torch.load(r.run_dir / "model.pt", weights_only=True))
    assert clusters["num_clusters"] == 3  # the synthetic set's classes = the code's categories


def test_resume_continues_both_optimisers_and_the_latent_stream(resume_runs):
    runs = resume_runs(*TINY, "seed=3", split=1, total=3)
    state = torch.load(runs.first_checkpoint, weights_only=True)
    assert set(state["optimizer"]) == {"discriminator", "generator"} and "latent_gen" in state["method"]
    assert runs.whole.scores() == runs.resumed.scores()
    assert runs.resumed.losses() == same_losses(runs.whole.losses())
    assert [r["d_loss"] for r in runs.resumed.history()] == same_losses([r["d_loss"] for r in runs.whole.history()])
    # both optimisers end exactly where the uninterrupted run's did: Adam's moments and step counts
    final = [torch.load(r.run_dir / "checkpoint.pt", weights_only=True) for r in (runs.whole, runs.resumed)]
    for name in ("discriminator", "generator"):
        a, b = (f["optimizer"][name]["state"] for f in final)
        assert a.keys() == b.keys() and a
        for i in a:
            assert all(torch.equal(a[i][key], b[i][key]) for key in a[i]), (name, i)
    assert all(torch.equal(final[0]["model"][k], final[1]["model"][k]) for k in final[0]["model"])


def test_a_non_finite_loss_stops_the_run_naming_its_step(run_cli, monkeypatch):
    calls = {"n": 0}
    real = ig.generator_loss

    def poisoned(logits):
        calls["n"] += 1
        loss = real(logits)
        return loss * float("nan") if calls["n"] >= 3 else loss

    monkeypatch.setattr(ig, "generator_loss", poisoned)
    r = run_cli(*TINY, "trainer.epochs=2", "trainer.sync_every=2")
    assert r.code != 0
    assert "epoch 1, step 3" in r.err and "Traceback" not in r.err
    assert not (r.run_dir / "checkpoint.pt").exists()  # the first epoch had the bad step: nothing was saved


def test_bf16_on_the_cpu_trains(run_cli):
    r = run_cli(*TINY, "trainer.epochs=1", "trainer.precision=bf16")
    assert r.code == 0, r.err
    assert math.isfinite(r.history()[-1]["loss"])


def test_configure_optimizers_is_required_of_a_method_that_owns_them():
    from clusterbench.methods.deep import DeepMethod

    with pytest.raises(NotImplementedError):
        DeepMethod().configure_optimizers(0.1)
    with pytest.raises(RuntimeError, match="bound by the engine"):
        DeepMethod().optimize("x", torch.zeros(()))
    with pytest.raises(ConfigError, match="method.q_optimizer"):
        InfoGAN(q_optimizer="both")
