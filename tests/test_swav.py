"""SwAV: Sinkhorn–Knopp codes, the swapped-prediction loss, the prototype freeze, the queue,
end-to-end runs (2 views and multi-crop), resume, and one-line errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clusterbench.backbones.mlp import MLP
from clusterbench.methods.deep import Batch, InputShape
from clusterbench.methods.swav import SwAV, sinkhorn, swapped_prediction_loss
from conftest import same_losses

SMALL = ["dataset=synthetic", "dataset.num_samples=96", "hardware=cpu", "backbone=strided", "backbone.widths=[8,16]",
         "trainer.batch_size=32", "trainer.epochs=2", "trainer.eval_every=1"]
SWAV = ["method=swav", "method.head_hidden=32", "method.feature_dim=16", "method.num_prototypes=3", "method.freeze_prototypes_niters=2"]


def direct_sinkhorn(scores: list[list[float]], eps: float, iterations: int) -> list[list[float]]:
    """The algorithm written out element by element (B rows of K scores)."""
    b, k = len(scores), len(scores[0])
    q = [[math.exp(scores[i][j] / eps) for i in range(b)] for j in range(k)]  # K×B
    total = sum(sum(row) for row in q)
    q = [[v / total for v in row] for row in q]
    for _ in range(iterations):
        for j in range(k):
            r = sum(q[j])
            q[j] = [v / r / k for v in q[j]]
        for i in range(b):
            c = sum(q[j][i] for j in range(k))
            for j in range(k):
                q[j][i] = q[j][i] / c / b
    return [[q[j][i] * b for j in range(k)] for i in range(b)]


def test_sinkhorn_matches_a_direct_loop_on_a_small_matrix():
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(6, 4, generator=g, dtype=torch.float64) * 2 - 1
    for iterations in (1, 3, 7):
        got = sinkhorn(scores, 0.1, iterations)
        want = torch.tensor(direct_sinkhorn(scores.tolist(), 0.1, iterations), dtype=torch.float64)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_sinkhorn_marginals_codes_sum_to_one_and_prototypes_get_b_over_k():
    g = torch.Generator().manual_seed(1)
    b, k = 64, 8
    scores = F.normalize(torch.randn(b, 16, generator=g), dim=1) @ F.normalize(torch.randn(k, 16, generator=g), dim=1).t()
    deviations = []
    for iterations in (3, 10, 200):
        q = sinkhorn(scores, 0.05, iterations)
        assert q.shape == (b, k) and (q >= 0).all()
        torch.testing.assert_close(q.sum(1), torch.ones(b), rtol=0, atol=1e-5)  # each sample's code sums to 1
        deviations.append(float((q.sum(0) - b / k).abs().max() / (b / k)))  # each prototype: B/K in total
    assert deviations[0] < 0.35  # the paper's 3 iterations: roughly balanced already
    assert deviations[0] > deviations[1] > deviations[2] and deviations[2] < 1e-4  # converges with iterations


def _sinkhorn_rank(rank: int, world: int, port: int, scores: torch.Tensor, conn) -> None:  # noqa: ANN001
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    rows = len(scores) // world
    conn.send(sinkhorn(scores[rank * rows : (rank + 1) * rows], 0.05, 3, world_size=world).tolist())
    dist.destroy_process_group()


def test_sinkhorn_under_ddp_equals_one_process_on_the_global_batch():
    """The row sums (and the total) are all-reduced: 2 ranks with half the batch each give the
    codes one process computes on the whole batch. Forked processes, gloo on CPU."""
    import multiprocessing
    import socket

    g = torch.Generator().manual_seed(3)
    scores = F.normalize(torch.randn(16, 8, generator=g), dim=1) @ F.normalize(torch.randn(5, 8, generator=g), dim=1).t()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = multiprocessing.get_context("fork")
    pipes = [ctx.Pipe(duplex=False) for _ in range(2)]
    procs = [ctx.Process(target=_sinkhorn_rank, args=(rank, 2, port, scores, pipes[rank][1])) for rank in range(2)]
    for p in procs:
        p.start()
    assert all(pipes[rank][0].poll(120) for rank in range(2)), "a rank died or hung"
    parts = [torch.tensor(pipes[rank][0].recv()) for rank in range(2)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    torch.testing.assert_close(torch.cat(parts), sinkhorn(scores, 0.05, 3))
    assert not torch.allclose(parts[0], sinkhorn(scores[:8], 0.05, 3))  # a rank alone would balance differently


def test_sinkhorn_survives_a_small_epsilon_in_float32():
    scores = torch.tensor([[1.0, -1.0, 0.2], [-0.9, 0.95, 0.1], [0.3, 0.2, 0.99]])
    q = sinkhorn(scores, 0.005, 3)  # exp(1/0.005) = e^200 overflows float32 without the shift
    assert torch.isfinite(q).all() and q.dtype == torch.float32
    torch.testing.assert_close(q.argmax(1), torch.tensor([0, 1, 2]))


def test_swapped_prediction_loss_against_a_direct_computation():
    g = torch.Generator().manual_seed(2)
    b, k, tau = 5, 4, 0.1
    scores = [torch.randn(b, k, generator=g) for _ in range(4)]  # 2 global crops + 2 local
    codes = [torch.softmax(torch.randn(b, k, generator=g), 1) for _ in range(2)]
    want = 0.0
    for s in range(2):
        sub = 0.0
        for t in range(4):
            if t == s:
                continue
            for n in range(b):
                logits = [float(v) / tau for v in scores[t][n]]
                log_z = math.log(sum(math.exp(v) for v in logits))
                sub -= sum(float(codes[s][n][j]) * (logits[j] - log_z) for j in range(k)) / b
        want += sub / 3
    want /= 2
    assert float(swapped_prediction_loss(scores, codes, tau)) == pytest.approx(want, rel=1e-5)


def _swav(**kw) -> SwAV:
    method = SwAV(**{"num_prototypes": 4, "feature_dim": 8, "head_hidden": 16, **kw})
    method.model = method.setup(MLP(in_channels=1, image_size=8, name="mlp", hidden=[16]), InputShape(1, 8))
    return method


def _views(b: int = 8, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, 1, 8, 8, generator=g) for _ in range(2)]


def test_prototypes_are_frozen_before_n_iterations_and_learn_after():
    torch.manual_seed(0)
    method = _swav(freeze_prototypes_niters=3)
    w = method.model.prototypes.weight
    for step in range(5):
        method.model.zero_grad(set_to_none=True)
        out = method.training_step(Batch(_views(seed=step), torch.arange(8), 0, step))
        out["loss"].backward()
        assert w.grad is not None and w.grad.abs().sum() > 0  # the loss does reach them
        method.before_optimizer_step(step)
        if step < 3:
            assert w.grad is None  # dropped: no update, no decay, no momentum
        else:
            assert w.grad.abs().sum() > 0
        assert method.model.head[0].weight.grad.abs().sum() > 0  # the rest trains throughout


def test_scores_and_codes_stay_float32_under_bf16_autocast():
    method = _swav()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        scores = method.model.scores(method.model.project(torch.cat(_views())))
        out = method.training_step(Batch(_views(), torch.arange(8), 0, 0))
    assert scores.dtype == torch.float32 and out["loss"].dtype == torch.float32
    assert float(out["code_used"]) <= 4 + 1e-4  # a perplexity over 4 prototypes


def test_prototypes_are_renormalised_before_every_step():
    method = _swav()
    with torch.no_grad():
        method.model.prototypes.weight.mul_(3.0)
    method.training_step(Batch(_views(), torch.arange(8), 0, 0))
    torch.testing.assert_close(method.model.prototypes.weight.norm(dim=1), torch.ones(4))


def test_queue_joins_only_from_its_epoch_and_once_full():
    torch.manual_seed(0)
    method = _swav(queue_length=16, epoch_queue_starts=1)  # 2 batches of 8 fill it
    queue = method.model.queue
    used = []
    for epoch, step in [(0, 0), (0, 1), (0, 2), (1, 3), (1, 4), (1, 5), (2, 6)]:
        out = method.training_step(Batch(_views(seed=step), torch.arange(8), epoch, step))
        used.append(bool(out["queue_used"]))
        if epoch == 0:
            assert int(queue.filled) == 0  # nothing enters before its epoch
    assert used == [False, False, False, False, False, True, True]  # full after two pushes of epoch 1
    assert queue.features.shape == (2, 16, 8) and int(queue.filled) == 16
    # the queue holds the global crops' z, newest first (same batch, same BN statistics)
    views = _views(seed=7)
    with torch.no_grad():
        z = method.model.project(torch.cat(views)).view(2, 8, -1)
    before = queue.features[:, :8].clone()
    method.training_step(Batch(views, torch.arange(8), 2, 7))
    torch.testing.assert_close(queue.features[:, :8], z)
    torch.testing.assert_close(queue.features[:, 8:], before)  # the previous newest moved back
    assert torch.allclose(queue.features.norm(dim=2), torch.ones(2, 16), atol=1e-5)


def test_the_queue_changes_the_codes():
    """With the queue in Sinkhorn the batch's codes are balanced over batch + queue, not the batch."""
    torch.manual_seed(0)
    scores = F.normalize(torch.randn(8, 4), dim=1)
    queue_scores = F.normalize(torch.randn(16, 4), dim=1)
    alone = sinkhorn(scores, 0.05, 3)
    joint = sinkhorn(torch.cat([queue_scores, scores]), 0.05, 3)[-8:]
    assert not torch.allclose(alone, joint)
    torch.testing.assert_close(joint.sum(1), torch.ones(8))


@pytest.mark.parametrize(
    "extra",
    [
        (),  # 2 views, K = classes: clusters are the argmax prototype, k-means logged beside
        ("augment=multicrop", "augment.local_crops=2", "augment.local_size=4", "method.num_prototypes=10",
         "method.queue_length=32", "method.epoch_queue_starts=1", "method.cluster_on=head", "trainer.precision=bf16"),
    ],
    ids=["2views-argmax", "multicrop-queue-kmeans-head-bf16"],
)
def test_swav_runs_a_few_steps(run_cli, extra):
    r = run_cli(*SMALL, *SWAV, *extra)
    assert r.code == 0, r.err
    m = r.metrics()
    assert m["method"] == "swav" and m["n_samples"] == 96 and 0 <= m["acc"] <= 1
    assert m["method_info"]["steps"] == 6
    history = r.history()
    assert len(history) == 2 and all(np.isfinite(rec["loss"]) for rec in history)
    assert all(1.0 <= rec["code_used"] <= 10.0 + 1e-3 and "pred_used" in rec for rec in history)
    if not extra:
        assert "kmeans_acc" in history[-1]  # the argmax is the prediction; k-means is logged beside it
    else:
        assert history[0]["queue_used"] == 0 and history[1]["queue_used"] > 0  # from epoch 1, once full


def test_resume_restores_queue_and_prototypes(resume_runs):
    runs = resume_runs(*SMALL, *SWAV, "trainer.eval_every=0", "trainer.schedule=constant", "method.queue_length=32",
                       "method.epoch_queue_starts=1", "method.freeze_prototypes_niters=4", "seed=3", split=2, total=3)
    state = torch.load(runs.first_checkpoint, weights_only=True)["model"]
    assert state["queue.features"].shape == (2, 32, 16) and int(state["queue.filled"]) == 32
    assert "prototypes.weight" in state
    assert runs.whole.scores() == runs.resumed.scores()
    assert runs.resumed.losses() == same_losses(runs.whole.losses())
    final = lambda r: torch.load(r.run_dir / "checkpoint.pt", weights_only=True)["model"]  # noqa: E731
    for key in ("queue.features", "prototypes.weight"):
        assert torch.equal(final(runs.whole)[key], final(runs.resumed)[key])


@pytest.mark.parametrize(
    "arg,key",
    [
        ("method.epsilon=0", "method.epsilon"),
        ("method.num_prototypes=1", "method.num_prototypes"),
        ("method.queue_length=-8", "method.queue_length"),
        ("method.freeze_prototypes_niters=-1", "method.freeze_prototypes_niters"),
        ("method.cluster_on=pixels", "method.cluster_on"),
    ],
)
def test_bad_values_are_one_line_errors(run_cli, arg, key):
    r = run_cli(*SMALL, *SWAV, arg)
    assert r.code == 2
    lines = [line for line in r.err.splitlines() if line.strip() and not line.startswith("\r")]
    assert len(lines) == 1 and lines[0].startswith(f"error: {key}"), r.err
    assert "Traceback" not in r.err + r.out


def test_codes_come_from_the_recipes_global_crops_even_when_local_crops_are_as_large():
    # 2 global + 2 local crops, all 8 px: the sizes cannot tell them apart, the recipe can
    torch.manual_seed(0)
    method = _swav(freeze_prototypes_niters=0)
    g = torch.Generator().manual_seed(1)
    views = [torch.randn(8, 1, 8, 8, generator=g) for _ in range(4)]
    loss = method.training_step(Batch(views, torch.arange(8), 0, 0, num_global=2))["loss"].detach()
    with torch.no_grad():
        net = method.model
        scores = list(net.scores(net.project(torch.cat(views))).split(8))
        codes = [sinkhorn(scores[s], method.epsilon, method.sinkhorn_iterations) for s in range(2)]  # the two global crops only
        expected = swapped_prediction_loss(scores, codes, method.temperature)
        every = swapped_prediction_loss(scores, [sinkhorn(sc, method.epsilon, method.sinkhorn_iterations) for sc in scores], method.temperature)
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    assert abs(float(expected) - float(every)) > 1e-3  # coding all four crops (the size rule) is another loss
