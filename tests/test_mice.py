"""MiCE: the ELBO, the posterior, the gating centres and the μ update against direct computations;
a few steps end to end; resume restores the queues, μ and the teacher; bad values fail in one line."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clusterbench.methods.mice import (
    expert_log_likelihood,
    expert_prototypes,
    expert_prototypes_ema,
    gating_log_prior,
    max_mahalanobis_centres,
    mice_elbo,
    posterior,
)
from conftest import same_losses

SMALL = ["method=mice", "dataset=synthetic", "dataset.num_samples=96", "hardware=cpu", "backbone=strided", "backbone.widths=[8,16]",
         "trainer.batch_size=32", "trainer.epochs=2", "method.queue_size=40", "method.feature_dim=8"]


def _unit(*shape: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), dim=-1)


def _small_problem():
    b, k, d, nu = 3, 4, 5, 6
    f, v, queue, mu = _unit(b, k, d, seed=1), _unit(b, k, d, seed=2), _unit(nu, k, d, seed=3), _unit(k, d, seed=4)
    g, omega = _unit(b, d, seed=5), max_mahalanobis_centres(k, d).double()
    return f, v, queue, mu, g, omega


def _direct(f, v, queue, mu, g, omega, tau, kappa):
    """Every quantity with explicit loops over samples n and experts k."""
    b, k = f.shape[:2]
    prior = torch.zeros(b, k, dtype=torch.float64)
    lik = torch.zeros(b, k, dtype=torch.float64)
    for n in range(b):
        gate = [math.exp(float(omega[j] @ g[n]) / kappa) for j in range(k)]
        for j in range(k):
            prior[n, j] = gate[j] / sum(gate)
            pos = math.exp(float(v[n, j] @ (f[n, j] + mu[j])) / tau)
            neg = sum(math.exp(float(queue[u, j] @ (f[n, j] + mu[j])) / tau) for u in range(len(queue)))
            lik[n, j] = pos / (pos + neg)
    q = torch.zeros(b, k, dtype=torch.float64)
    loss = 0.0
    for n in range(b):
        joint = [float(prior[n, j] * lik[n, j]) for j in range(k)]
        for j in range(k):
            q[n, j] = joint[j] / sum(joint)
        # −ELBO = −Σ_k q log p(y|x,z=k) + KL(q ‖ p(z|x))
        loss += sum(-q[n, j] * math.log(lik[n, j]) + q[n, j] * math.log(q[n, j] / prior[n, j]) for j in range(k))
    return prior, lik, q, float(loss) / b  # a Python float: pytest.approx iterates 0-d tensors (pytest ≥ 9)


@pytest.mark.parametrize("tau,kappa", [(1.0, 1.0), (0.5, 0.2)])
def test_elbo_and_posterior_match_a_direct_computation(tau, kappa):
    f, v, queue, mu, g, omega = _small_problem()
    prior, lik, q, loss = _direct(f, v, queue, mu, g, omega, tau, kappa)
    log_prior = gating_log_prior(g, omega, kappa)
    log_lik = expert_log_likelihood(f, v, queue, mu, tau)
    torch.testing.assert_close(log_prior.exp(), prior)
    torch.testing.assert_close(log_lik.exp(), lik)
    torch.testing.assert_close(posterior(log_prior, log_lik), q)
    got, got_q, parts = mice_elbo(log_prior, log_lik)
    assert float(got) == pytest.approx(loss, rel=1e-10)
    torch.testing.assert_close(got_q, q)
    assert float(parts["nll"] + parts["kl"]) == pytest.approx(loss, rel=1e-10)
    # with q the exact posterior the ELBO is the log marginal likelihood log Σ_k p(z=k|x) p(y|x,z=k)
    assert float(got) == pytest.approx(float(-(prior * lik).sum(1).log().mean()), rel=1e-10)


def test_detaching_the_posterior_leaves_the_gradient_unchanged():
    """The official loss keeps q's gradient; at the exact posterior it is zero, so detaching is exact."""
    f, v, queue, mu, g, omega = _small_problem()
    grads = []
    for detach in (True, False):
        f_, g_ = f.clone().requires_grad_(), g.clone().requires_grad_()
        log_prior, log_lik = gating_log_prior(g_, omega, 1.0), expert_log_likelihood(f_, v, queue, mu, 1.0)
        if detach:
            loss = mice_elbo(log_prior, log_lik)[0]
        else:
            q = posterior(log_prior, log_lik)
            loss = -(q * (log_prior + log_lik - q.log())).sum(1).mean()
        grads.append(torch.autograd.grad(loss, [f_, g_]))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("k,dim", [(2, 1), (3, 2), (10, 9), (10, 128), (20, 32)])
def test_max_mahalanobis_centres_are_unit_and_equiangular(k, dim):
    c = max_mahalanobis_centres(k, dim).double()
    assert c.shape == (k, dim)
    torch.testing.assert_close(c.norm(dim=1), torch.ones(k, dtype=torch.float64), atol=1e-6, rtol=0)
    cos = c @ c.T
    for i, j in itertools.combinations(range(k), 2):
        assert float(cos[i, j]) == pytest.approx(-1.0 / (k - 1), abs=1e-6)
    with pytest.raises(ValueError, match="dim"):
        max_mahalanobis_centres(k, k - 2)


def test_the_closed_form_prototype_update_matches_a_direct_computation():
    n, k, d = 7, 3, 4
    v = _unit(n, k, d, seed=6)
    q = torch.softmax(torch.randn(n, k, generator=torch.Generator().manual_seed(7), dtype=torch.float64), dim=1)
    for j in range(k):
        s = sum(q[i, j] * v[i, j] for i in range(n))
        torch.testing.assert_close(expert_prototypes(q, v)[j], s / s.norm())


def test_the_online_prototype_update_matches_values_worked_by_hand():
    """mu_update=batch_ema: S' = m·S + (1 − m)·(1/B) Σ_n q_nk v_{n,k}, μ = normalise(S'), B = 2, K = D = 2, m = 1/2."""
    q = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    v = torch.tensor([[[1.0, 0.0], [0.0, 1.0]],   # image 0: v_{0,0}, v_{0,1}
                      [[0.0, 1.0], [1.0, 0.0]]])  # image 1: v_{1,0}, v_{1,1}
    sums = torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    # batch means: expert 0 (1·(1,0) + 0.5·(0,1)) / 2 = (0.5, 0.25); expert 1 (0·(0,1) + 0.5·(1,0)) / 2 = (0.25, 0)
    new, mu = expert_prototypes_ema(sums, q, v, 0.5)
    torch.testing.assert_close(new, torch.tensor([[0.25, 0.125], [0.125, 0.5]]))
    torch.testing.assert_close(mu, torch.tensor([[2.0, 1.0], [1.0, 4.0]]) / torch.tensor([[5.0], [17.0]]).sqrt())
    # from S = 0 the first batch alone sets μ's direction, whatever m is
    _, first = expert_prototypes_ema(torch.zeros(2, 2), q, v, 0.99)
    torch.testing.assert_close(first, torch.tensor([[2.0, 1.0], [1.0, 0.0]]) / torch.tensor([[5.0], [1.0]]).sqrt())
    # an epoch of identical batches with m = 0 is Eq. 13 on that batch
    torch.testing.assert_close(expert_prototypes_ema(sums, q, v, 0.0)[1], expert_prototypes(q, v))


def test_the_online_prototype_update_runs_logs_and_resumes(run_cli, resume_runs):
    r = run_cli(*SMALL, "method.mu_update=batch_ema", "method.mu_momentum=0.9", "trainer.eval_every=0")
    assert r.code == 0, r.err
    history = r.history()
    assert "mu_shift" not in history[0] and 0 < history[1]["mu_shift"] <= 2 and 1 <= history[1]["experts_used"] <= 3
    assert r.metrics()["method_info"]["steps"] == 6
    runs = resume_runs(*SMALL, "method.mu_update=batch_ema", "trainer.schedule=constant", "trainer.eval_every=0", "seed=3", split=2, total=3)
    state = torch.load(runs.first_checkpoint, weights_only=True)["model"]
    assert {"mu", "mu_sums", "mu_at_epoch", "wins"} <= set(state)
    torch.testing.assert_close(F.normalize(state["mu_sums"], dim=1), state["mu"])
    assert runs.whole.scores() == runs.resumed.scores()
    assert [r.get("mu_shift") for r in runs.whole.history()] == [r.get("mu_shift") for r in runs.resumed.history()]


@pytest.mark.parametrize(
    "extra",
    [
        ("trainer.eval_every=1",),
        ("augment.global_crops=3", "method.num_clusters=4", "trainer.precision=bf16", "trainer.eval_every=0"),  # a gating view; K ≠ classes
    ],
    ids=["default", "gating-view-k4-bf16"],
)
def test_mice_runs_a_few_steps_and_logs_gating_scores(run_cli, extra):
    r = run_cli(*SMALL, *extra)
    assert r.code == 0, r.err
    m = r.metrics()
    assert m["method"] == "mice" and m["n_samples"] == 96 and 0 <= m["acc"] <= 1
    assert m["method_info"]["steps"] == 6
    assert {"gating_acc", "gating_nmi", "gating_ari"} <= set(m["method_info"])
    history = r.history()
    assert len(history) == 2 and all(np.isfinite(rec["loss"]) and "mu_shift" in rec for rec in history)
    assert "gating_acc" in history[-1]
    assert m["n_clusters"] == (4 if "method.num_clusters=4" in extra else 3)


def test_resume_restores_queues_prototypes_and_teacher(resume_runs):
    runs = resume_runs(*SMALL, "trainer.schedule=constant", "trainer.eval_every=0", "seed=3", split=2, total=3)
    state = torch.load(runs.first_checkpoint, weights_only=True)["model"]
    assert {"queue.features", "queue.ptr", "mu", "omega"} <= set(state)
    assert any(key.startswith("backbone_t.") for key in state) and any(key.startswith("experts_t.") for key in state)
    assert int(state["queue.ptr"]) == (2 * 3 * 32) % 40  # 6 steps of 32 teacher embeddings went in
    assert runs.whole.scores() == runs.resumed.scores()
    assert runs.whole.metrics()["method_info"]["gating_acc"] == runs.resumed.metrics()["method_info"]["gating_acc"]
    assert runs.resumed.losses() == same_losses(runs.whole.losses())
    assert [r["mu_shift"] for r in runs.whole.history()] == [r["mu_shift"] for r in runs.resumed.history()]


@pytest.mark.parametrize(
    "override,key",
    [
        ("method.queue_size=0", "method.queue_size"),
        ("method.momentum=1.0", "method.momentum"),
        ("method.temperature=-1", "method.temperature"),
        ("method.gating_temperature=0", "method.gating_temperature"),
        ("method.feature_dim=1", "method.feature_dim"),  # 3 experts need ≥ 2 dimensions
        ("method.mu_update=sometimes", "method.mu_update"),
        ("method.mu_momentum=1.0", "method.mu_momentum"),
    ],
)
def test_bad_values_are_one_line_errors(run_cli, override, key):
    r = run_cli(*SMALL, override)
    assert r.code == 2
    lines = [line for line in r.err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and key in lines[0], r.err
