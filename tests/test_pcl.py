"""PCL: the concentration estimate, ProtoNCE by hand, the E-step, a few steps end to end, resume, bad values."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clusterbench.backbones.mlp import MLP
from clusterbench.distributed import DistInfo
from clusterbench.errors import ConfigError
from clusterbench.methods.deep import EpochContext, InputShape
from clusterbench.methods.pcl import PCL, concentration, proto_nce, proto_nce_official, sample_negative_prototypes, sample_unused_prototypes
from conftest import same_losses

SMALL = ["dataset=synthetic", "dataset.num_samples=96", "hardware=cpu", "trainer.batch_size=32", "trainer.epochs=2", "trainer.eval_every=1",
         "backbone=strided", "backbone.widths=[8,16]"]
PCL_SMALL = ["method=pcl", "method.queue_size=64", "method.head_hidden=32", "method.feature_dim=16", "method.num_prototypes=[3,6,12]",
             "method.warmup_epochs=1", "method.estep_restarts=1", "method.momentum=0.99"]


def reference_phi(dist: list[float], labels: list[int], k: int, tau: float, alpha: float = 10.0) -> np.ndarray:
    """The official code's loops, written out: mean sqrt-distance / log(Z + α), max for Z ≤ 1, clip, rescale."""
    members: list[list[float]] = [[] for _ in range(k)]
    for d, j in zip(dist, labels):
        members[j].append(d)
    phi = np.zeros(k)
    for j, ds in enumerate(members):
        if len(ds) > 1:
            phi[j] = np.mean(ds) / np.log(len(ds) + alpha)
    top = phi.max()
    for j, ds in enumerate(members):
        if len(ds) <= 1:
            phi[j] = top
    phi = phi.clip(np.percentile(phi, 10), np.percentile(phi, 90))
    return tau * phi / phi.mean()


# --- the concentration φ --------------------------------------------------------------------------


def test_concentration_by_hand_on_three_clusters():
    # cluster 0: distances 1, 3 (Z = 2); cluster 1: 2, 2, 2 (Z = 3); cluster 2: one point
    dist, labels = [1.0, 3.0, 2.0, 2.0, 2.0, 0.5], [0, 0, 1, 1, 1, 2]
    a, b = 2.0 / math.log(12), 2.0 / math.log(13)  # φ0 = mean 2 / log(2 + 10), φ1 = 2 / log(3 + 10)
    c = a  # the singleton takes the largest φ
    lo, hi = b + 0.2 * (a - b), a  # np.percentile's linear interpolation on sorted (b, a, a): 10th and 90th
    clipped = [max(lo, min(hi, v)) for v in (a, b, c)]
    expected = [0.2 * v / (sum(clipped) / 3) for v in clipped]
    phi = concentration(torch.tensor(dist), torch.tensor(labels), 3, temperature=0.2)
    assert phi.dtype == torch.float32
    assert torch.allclose(phi, torch.tensor(expected), atol=1e-6)
    assert torch.allclose(phi.double(), torch.from_numpy(reference_phi(dist, labels, 3, 0.2)), atol=1e-6)


def test_concentration_matches_the_reference_loops_on_random_clusters():
    gen = torch.Generator().manual_seed(0)
    for k, n in [(5, 40), (20, 60), (50, 70)]:  # the last: many singletons and empty clusters
        labels = torch.randint(0, k, (n,), generator=gen)
        dist = torch.rand(n, generator=gen) * 2
        phi = concentration(dist, labels, k, temperature=0.1, alpha=10.0)
        assert torch.allclose(phi.double(), torch.from_numpy(reference_phi(dist.tolist(), labels.tolist(), k, 0.1)), atol=1e-6)
        assert math.isclose(float(phi.mean()), 0.1, rel_tol=1e-5)  # mean = τ


def test_concentration_empty_and_singleton_clusters_get_the_largest_phi():
    # clusters 0, 1 spread; cluster 2 a singleton at distance 0; cluster 3 empty
    dist = torch.tensor([0.1, 0.1, 0.9, 0.9, 0.0])
    labels = torch.tensor([0, 0, 1, 1, 2])
    phi = concentration(dist, labels, 4, temperature=0.5)
    assert phi[2] == phi.max() and phi[3] == phi.max() and phi[1] == phi.max()  # the loose cluster 1 and the memberless ones
    assert phi[0] < phi[1]
    assert math.isclose(float(phi.mean()), 0.5, rel_tol=1e-6)


def test_concentration_all_equal_and_degenerate_cases_give_tau_everywhere():
    equal = concentration(torch.full((6,), 0.3), torch.tensor([0, 0, 1, 1, 2, 2]), 3, temperature=0.2)
    assert torch.allclose(equal, torch.full((3,), 0.2))
    singletons = concentration(torch.tensor([0.5, 0.7]), torch.tensor([0, 1]), 4, temperature=0.2)  # no cluster has 2 members
    assert torch.allclose(singletons, torch.full((4,), 0.2))
    zeros = concentration(torch.zeros(4), torch.tensor([0, 0, 1, 1]), 2, temperature=0.3)  # duplicates: no spread anywhere
    assert torch.allclose(zeros, torch.full((2,), 0.3))
    # a populated cluster of identical points (φ = 0) takes the smallest positive φ, never 0 (a division by zero later)
    some = concentration(torch.tensor([0.0, 0.0, 0.4, 0.6, 1.0, 1.0]), torch.tensor([0, 0, 1, 1, 2, 2]), 3, temperature=0.2)
    assert bool((some > 0).all()) and math.isclose(float(some.mean()), 0.2, rel_tol=1e-6)


def test_concentration_clamps_to_the_10th_and_90th_percentile():
    k = 11  # 11 clusters of 2 points with φ_j ∝ j + 1, and one outlier cluster 100× looser
    spread = [float(j + 1) for j in range(k - 1)] + [1000.0]
    dist = torch.tensor([s for s in spread for _ in range(2)])
    labels = torch.arange(k).repeat_interleave(2)
    raw = np.array(spread) / np.log(2 + 10)
    phi = concentration(dist, labels, k, temperature=1.0).double().numpy()
    lo, hi = np.percentile(raw, 10), np.percentile(raw, 90)
    assert math.isclose(phi.max() / phi.min(), hi / lo, rel_tol=1e-6)  # both tails clipped, the ratio is the percentiles'
    assert (phi[:2] == phi.min()).all() and phi[-1] == phi.max() and phi[-1] < 3 * phi.mean()  # the outlier is tamed


# --- ProtoNCE -------------------------------------------------------------------------------------


def test_proto_nce_against_loops_by_hand():
    q = F.normalize(torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0]]), dim=1)
    c = F.normalize(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]), dim=1)
    phi = torch.tensor([0.1, 0.2, 0.3, 0.4])
    positives = torch.tensor([0, 3])
    negatives = torch.tensor([[2, 1], [0, 2]])
    expected = 0.0
    for i in range(2):
        cols = [int(positives[i])] + negatives[i].tolist()
        z = [sum(float(q[i, d]) * float(c[j, d]) for d in range(3)) / float(phi[j]) for j in cols]
        expected += -(z[0] - math.log(sum(math.exp(v) for v in z))) / 2
    assert math.isclose(float(proto_nce(q, c, phi, positives, negatives)), expected, rel_tol=1e-6)
    # negatives=None: every other prototype; the same as listing all of them
    all_others = torch.tensor([[1, 2, 3], [0, 1, 2]])
    assert math.isclose(float(proto_nce(q, c, phi, positives, None)), float(proto_nce(q, c, phi, positives, all_others)), rel_tol=1e-6)


def test_official_proto_nce_against_a_direct_computation_with_shared_prototypes():
    # the authors' form: every row's softmax runs over the positives of ALL rows (duplicates kept)
    # plus the negatives no row uses; row i's target is column i
    q = F.normalize(torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.6, 0.8]]), dim=1)
    c = F.normalize(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 1.0]]), dim=1)
    phi = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5])
    positives = torch.tensor([0, 3, 0])  # rows 0 and 2 share prototype 0
    negatives = torch.tensor([4, 1])
    cols = positives.tolist() + negatives.tolist()  # [0, 3, 0, 4, 1]
    expected = 0.0
    for i in range(3):
        z = [sum(float(q[i, d]) * float(c[j, d]) for d in range(3)) / float(phi[j]) for j in cols]
        expected += -(z[i] - math.log(sum(math.exp(v) for v in z))) / 3
    got = float(proto_nce_official(q, c, phi, positives, negatives))
    assert math.isclose(got, expected, rel_tol=1e-6)
    # not the printed per-row form on the same inputs
    paper = float(proto_nce(q, c, phi, positives, torch.tensor([[4, 1], [4, 1], [4, 1]])))
    assert abs(got - paper) > 0.1


def test_official_negatives_are_prototypes_no_row_uses_capped_at_what_is_left():
    gen = torch.Generator().manual_seed(0)
    positives = torch.tensor([0, 3, 3, 9])
    seen: set[int] = set()
    for _ in range(50):
        neg = sample_unused_prototypes(positives, 10, 4, gen)
        assert len(neg) == 4 and len(set(neg.tolist())) == 4 and not set(neg.tolist()) & {0, 3, 9}
        seen |= set(neg.tolist())
    assert seen == set(range(10)) - {0, 3, 9}
    assert sorted(sample_unused_prototypes(positives, 10, 100, gen).tolist()) == [1, 2, 4, 5, 6, 7, 8]  # r > unused: all of them
    assert len(sample_unused_prototypes(torch.arange(10), 10, 4, gen)) == 0  # every prototype used: positives only


def test_proto_nce_form_is_checked():
    with pytest.raises(ConfigError, match="method.proto_nce"):
        PCL(num_prototypes=[4], proto_nce="printed")


def test_negative_prototypes_are_distinct_others_and_cover_every_other_id():
    gen = torch.Generator().manual_seed(0)
    positives = torch.tensor([0, 3, 9, 5])
    seen = [set() for _ in positives]
    for _ in range(50):
        neg = sample_negative_prototypes(positives, 10, 4, gen)
        assert neg.shape == (4, 4) and int(neg.min()) >= 0 and int(neg.max()) < 10
        for row, (s, ids) in enumerate(zip(positives.tolist(), neg.tolist())):
            assert len(set(ids)) == 4 and s not in ids
            seen[row] |= set(ids)
    assert all(seen[row] == set(range(10)) - {s} for row, s in enumerate(positives.tolist()))
    with pytest.raises(ValueError):
        sample_negative_prototypes(positives, 10, 10, gen)


# --- the E-step on given features ---------------------------------------------------------------


def test_estep_clusters_given_features_and_skips_the_warmup():
    method = PCL(num_prototypes=[2, 4], warmup_epochs=1, estep_restarts=1, queue_size=8, feature_dim=4, head_hidden=8, temperature=0.2)
    method.model = method.setup(MLP(in_channels=1, image_size=4, name="mlp", hidden=[8]), InputShape(1, 4))
    gen = torch.Generator().manual_seed(0)
    centres = F.normalize(torch.randn(4, 4, generator=gen), dim=1)
    v = F.normalize(centres.repeat_interleave(10, 0) + 0.05 * torch.randn(40, 4, generator=gen), dim=1)
    calls = []

    def embed_all(fn):
        calls.append(fn)
        return v

    ctx = lambda epoch: EpochContext(epoch, 40, torch.device("cpu"), 0, DistInfo(), embed_all)  # noqa: E731
    assert method.on_epoch_start(ctx(0)) is None and not calls and not method.prototypes  # warm-up: no E-step
    stats = method.on_epoch_start(ctx(1))
    assert calls == [method.model.key]  # the momentum encoder's normalised head output
    assert set(stats) == {f"estep_k{k}_{s}" for k in (2, 4) for s in ("inertia", "raw_phi", "singletons")} | {"estep_empty_share", "estep_largest_share"}
    for k, ids, protos, phi in zip([2, 4], method.im2cluster, method.prototypes, method.phi):
        assert ids.shape == (40,) and protos.shape == (k, 4) and phi.shape == (k,)
        assert torch.allclose(protos.norm(dim=1), torch.ones(k), atol=1e-5)
        assert math.isclose(float(phi.mean()), 0.2, rel_tol=1e-5)
    assert len(set(zip(method.im2cluster[1].tolist(), torch.arange(40).div(10, rounding_mode="floor").tolist()))) == 4  # the 4 blobs
    with pytest.raises(ConfigError, match="method.num_prototypes"):
        method.on_epoch_start(EpochContext(1, 3, torch.device("cpu"), 0, DistInfo(), embed_all))  # K = 4 > 3 images


# --- end to end -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        (),  # every other prototype a negative (r ≥ K − 1)
        ("method.negative_prototypes=2", "method.symmetric=true", "method.estep_backend=torch", "method.split_bn=2", "method.cluster_on=head",
         "dataset.channels=3", "augment=mocov2", "trainer.precision=bf16", "method.warmup_epochs=0"),
    ],
    ids=["all-negatives", "sampled-symmetric-torch-splitbn-head-rgb-bf16-no-warmup"],
)
def test_pcl_runs_a_few_steps(run_cli, extra):
    r = run_cli(*SMALL, *PCL_SMALL, *extra)
    assert r.code == 0, r.err
    m = r.metrics()
    assert m["method"] == "pcl" and m["n_samples"] == 96 and 0 <= m["acc"] <= 1 and m["method_info"]["steps"] == 6
    history = r.history()
    assert len(history) == 2 and all(np.isfinite(rec["loss"]) for rec in history)
    warm = "method.warmup_epochs=0" not in extra
    assert ("proto_nce" in history[0]) != warm and "proto_nce" in history[1]  # ProtoNCE once the warm-up is over
    last = history[1]
    assert math.isclose(last["loss"], last["info_nce"] + last["proto_nce"], rel_tol=1e-5)
    assert {"estep_k3_inertia", "estep_k12_raw_phi", "estep_k6_singletons"} <= set(last)


@pytest.mark.parametrize("form", ["official", "paper"])
def test_resume_restores_the_negative_sampler(form, resume_runs, run_cli, tmp_path, monkeypatch):
    # the official form samples only prototypes no row of the 32-image batch uses: K = 64 leaves some
    ks = "method.num_prototypes=[3,6,12]" if form == "paper" else "method.num_prototypes=[12,64]"
    args = [*SMALL, *PCL_SMALL, ks, f"method.proto_nce={form}", "method.negative_prototypes=3", "trainer.schedule=constant", "trainer.eval_every=0", "seed=3"]
    runs = resume_runs(*args, split=2, total=3)
    whole, resumed = runs.whole, runs.resumed
    assert whole.scores() == resumed.scores()
    assert resumed.losses() == same_losses(whole.losses())
    assert [h["estep_k12_inertia"] for h in whole.history()[1:]] == [h["estep_k12_inertia"] for h in resumed.history()[1:]]

    # the check has teeth: a resume that forgets the sampler's state draws other negatives
    forgetful_dir = tmp_path / "forgetful"
    forgetful_dir.mkdir()
    shutil.copy(runs.first_checkpoint, forgetful_dir / "checkpoint.pt")
    monkeypatch.setattr(PCL, "load_method_state", lambda self, state: None)
    forgetful = run_cli(*args, "trainer.epochs=3", "resume=true", run_dir=forgetful_dir)
    assert forgetful.code == 0, forgetful.err
    assert forgetful.losses()[:2] == same_losses(whole.losses()[:2])
    assert forgetful.losses()[2] != same_losses(whole.losses()[2])


@pytest.mark.parametrize(
    "override,key",
    [
        ("method.num_prototypes=[1,10]", "method.num_prototypes"),
        ("method.num_prototypes=[]", "method.num_prototypes"),
        ("method.num_prototypes=[5,5]", "method.num_prototypes"),
        ("method.num_prototypes=[500]", "method.num_prototypes"),  # more prototypes than the 96 images
        ("method.warmup_epochs=-1", "method.warmup_epochs"),
        ("method.negative_prototypes=0", "method.negative_prototypes"),
        ("method.concentration_alpha=0", "method.concentration_alpha"),
        ("method.estep_backend=sklearn", "method.estep_backend"),
    ],
)
def test_bad_values_are_one_line_errors(run_cli, override, key):
    r = run_cli(*SMALL, *PCL_SMALL, "trainer.epochs=1", override)
    assert r.code == 2
    lines = [line for line in r.err.splitlines() if line.strip() and not line.startswith("\r")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and key in lines[0], r.err
    assert "Traceback" not in r.err + r.out
