"""The training loop's parts on inputs small enough to check by hand: InfoNCE, the queue,
split-BN, the momentum update, the schedule, LARS and checkpoints."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from clusterbench import checkpoint as ckpt
from clusterbench.backbones.split_bn import SplitBatchNorm, convert_split_bn
from clusterbench.errors import ClusterbenchError, ConfigError
from clusterbench.methods.deep import momentum_update
from clusterbench.methods.losses import info_nce
from clusterbench.methods.queue import FeatureQueue
from clusterbench.optim import LARS, build_optimizer, learning_rate


def test_info_nce_matches_the_formula_by_hand():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    k = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # query 0 agrees with its key, query 1 is orthogonal to it
    negatives = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    tau = 0.5
    # query 0: logits (1, 0, −1)/τ; query 1: (0, 1, 0)/τ; the positive is the first
    l0 = -math.log(math.exp(2) / (math.exp(2) + math.exp(0) + math.exp(-2)))
    l1 = -math.log(math.exp(0) / (math.exp(0) + math.exp(2) + math.exp(0)))
    assert info_nce(q, k, negatives, tau).item() == pytest.approx((l0 + l1) / 2, rel=1e-6)


def test_info_nce_gradient_flows_to_the_queries_only_through_the_loss():
    q = nn.functional.normalize(torch.randn(4, 3), dim=1).requires_grad_()
    k = nn.functional.normalize(torch.randn(4, 3), dim=1)
    info_nce(q, k, nn.functional.normalize(torch.randn(6, 3), dim=1), 0.1).backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()


def test_queue_starts_with_unit_vectors_and_wraps_around():
    queue = FeatureQueue(5, 3)
    assert torch.allclose(queue.features.norm(dim=1), torch.ones(5))
    a, b = torch.full((3, 3), 1.0), torch.full((3, 3), 2.0)
    queue.push(a)
    assert int(queue.ptr) == 3 and (queue.features[:3] == 1).all()
    queue.push(b)  # 3 does not divide 5: rows 3, 4, then 0
    assert int(queue.ptr) == 1
    assert (queue.features[3:] == 2).all() and (queue.features[0] == 2).all() and (queue.features[1:3] == 1).all()
    queue.push(torch.arange(21.0).view(7, 3))  # larger than the queue: the newest 5 stay
    assert sorted(queue.features[:, 0].tolist()) == [6.0, 9.0, 12.0, 15.0, 18.0]
    assert "features" in queue.state_dict() and "ptr" in queue.state_dict()


def test_split_batchnorm_normalises_each_sub_batch_on_its_own():
    torch.manual_seed(0)
    x = torch.randn(8, 3, 4, 4) + torch.arange(8.0).view(8, 1, 1, 1)  # the two halves differ in mean
    split = SplitBatchNorm(3, num_splits=2)
    plain = nn.BatchNorm2d(3)
    out = split(x)
    expected = torch.cat([plain(x[:4]), nn.BatchNorm2d(3)(x[4:])])
    assert torch.allclose(out, expected, atol=1e-5)
    # running statistics: the mean over the splits of each split's update
    m = 0.1 * torch.stack([x[:4].mean((0, 2, 3)), x[4:].mean((0, 2, 3))]).mean(0)
    assert torch.allclose(split.running_mean, m, atol=1e-5)
    split.eval()
    assert torch.allclose(split(x), nn.functional.batch_norm(x, split.running_mean, split.running_var, split.weight, split.bias, False, 0.0, split.eps))
    with pytest.raises(ConfigError, match="method.split_bn"):
        SplitBatchNorm(3, num_splits=3).train()(x)


def test_convert_split_bn_replaces_every_batchnorm_and_keeps_its_weights():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Sequential(nn.Flatten(), nn.Linear(8, 4), nn.BatchNorm1d(4)))
    net[1].weight.data.fill_(3.0)
    convert_split_bn(net, 2)
    assert isinstance(net[1], SplitBatchNorm) and isinstance(net[2][2], SplitBatchNorm)
    assert (net[1].weight == 3).all()
    assert net(torch.randn(4, 1, 4, 4)).shape == (4, 4)


def test_momentum_update_is_an_exponential_moving_average_of_the_parameters():
    source, target = nn.Linear(2, 2), nn.Linear(2, 2)
    before = [p.clone() for p in target.parameters()]
    momentum_update(target, source, 0.9)
    for t, b, s in zip(target.parameters(), before, source.parameters()):
        assert torch.allclose(t, 0.9 * b + 0.1 * s)


def test_learning_rate_warms_up_linearly_then_follows_a_half_cosine():
    assert learning_rate(0.05, 1.0, warmup=0.1, schedule="cosine") == pytest.approx(0.5)
    assert learning_rate(0.1, 1.0, warmup=0.1, schedule="cosine") == pytest.approx(1.0)
    assert learning_rate(0.55, 1.0, warmup=0.1, schedule="cosine") == pytest.approx(0.5)  # halfway through the cosine
    assert learning_rate(1.0, 1.0, warmup=0.1, schedule="cosine", min_lr=0.01) == pytest.approx(0.01)
    assert learning_rate(0.7, 0.3, warmup=0.0, schedule="constant") == 0.3


def test_lars_scales_each_weight_step_by_its_trust_ratio():
    w = nn.Parameter(torch.tensor([[3.0, 4.0]]))  # ‖w‖ = 5
    b = nn.Parameter(torch.tensor([1.0]))
    w.grad, b.grad = torch.tensor([[0.6, 0.8]]), torch.tensor([0.5])  # ‖g‖ = 1
    opt = LARS([w, b], lr=1.0, momentum=0.9, weight_decay=0.0, eta=0.01)
    opt.step()
    # trust = η‖w‖/‖g‖ = 0.05; the bias (1-D) is neither decayed nor adapted
    assert torch.allclose(w, torch.tensor([[3.0 - 0.03, 4.0 - 0.04]]))
    assert torch.allclose(b, torch.tensor([0.5]))


def test_lars_trust_ratio_with_weight_decay_is_larc_s():
    """η‖w‖ / (‖g‖ + λ‖w‖), applied to g + λw: ‖w‖ = 5, ‖g‖ = 1, λ = 0.2 → trust = 0.01·5 / 2."""
    w = nn.Parameter(torch.tensor([[3.0, 4.0]]))
    w.grad = torch.tensor([[0.6, 0.8]])
    LARS([w], lr=1.0, momentum=0.9, weight_decay=0.2, eta=0.01).step()
    step = 0.025 * (torch.tensor([[0.6, 0.8]]) + 0.2 * torch.tensor([[3.0, 4.0]]))
    assert torch.allclose(w, torch.tensor([[3.0, 4.0]]) - step)


def test_lars_clip_caps_the_trust_ratio_at_the_learning_rate():
    """Clip mode: step = lr·min(trust/lr, 1): a trust ratio above lr is capped, one below is kept."""
    for lr, expected_step in [(0.01, 0.01), (1.0, 0.05)]:  # trust = 0.05 as above
        w = nn.Parameter(torch.tensor([[3.0, 4.0]]))
        w.grad = torch.tensor([[0.6, 0.8]])
        LARS([w], lr=lr, momentum=0.9, weight_decay=0.0, eta=0.01, clip=True).step()
        assert torch.allclose(w, torch.tensor([[3.0, 4.0]]) - expected_step * torch.tensor([[0.6, 0.8]]))


def test_build_optimizer_rejects_impossible_values():
    params = [nn.Parameter(torch.zeros(2))]
    assert isinstance(build_optimizer("adam", params, 1e-3, 0.9, 0.0), torch.optim.Adam)
    with pytest.raises(ConfigError, match="trainer.lr"):
        build_optimizer("sgd", params, 0.0, 0.9, 0.0)
    with pytest.raises(ConfigError, match="trainer.weight_decay"):
        build_optimizer("sgd", params, 0.1, 0.9, -1.0)
    with pytest.raises(ConfigError, match="trainer.lars_eta"):
        build_optimizer("lars", params, 0.1, 0.9, 0.0, lars_eta=0.0)


def test_checkpoint_round_trip_with_the_safe_loader(tmp_path):
    random.seed(3)
    np.random.seed(4)
    torch.manual_seed(5)
    state = {"model": nn.Linear(2, 3).state_dict(), "rng": ckpt.rng_states(), "epoch": 7, "history": [{"loss": 1.5}]}
    expected = (random.random(), np.random.rand(), torch.rand(1))
    ckpt.save(tmp_path / "c.pt", state)
    loaded = torch.load(tmp_path / "c.pt", weights_only=True)  # the safe loader reads it
    assert loaded["epoch"] == 7 and loaded["history"] == [{"loss": 1.5}]
    assert torch.equal(loaded["model"]["weight"], state["model"]["weight"])
    ckpt.set_rng_states(loaded["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_damaged_checkpoint_is_a_one_line_error_naming_it(tmp_path):
    path = tmp_path / "checkpoint.pt"
    ckpt.save(path, {"epoch": 1})
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(ClusterbenchError, match="checkpoint.pt"):
        ckpt.load(path)
