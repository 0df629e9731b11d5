"""SCAE: the pose geometry and template rendering against hand cases, the two mixture
likelihoods and the sparsity terms against direct loops, the Set Transformer's permutation
invariance, where the stopped gradients stop, and runs end to end (resume, bad settings)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from clusterbench.backbones.capsule import CapsuleConvNet
from clusterbench.distributed import DistInfo
from clusterbench.errors import ConfigError
from clusterbench.methods import capsules as C
from clusterbench.methods.deep import InputShape
from clusterbench.methods.scae import SCAE
from clusterbench.methods.set_transformer import SetTransformer
from conftest import same_losses

TINY = ["method=scae", "dataset=synthetic", "dataset.num_samples=48", "dataset.image_size=12", "hardware=cpu", "hardware.threads=1",
        "backbone.widths=[8,8]", "backbone.strides=[2,1]", "method.part_capsules=5", "method.object_capsules=4",
        "method.special_features=3", "method.template_size=4", "method.canvas_size=14", "method.set_output_dim=8",
        "method.capsule_hidden=8", "method.capsule_params=4", "trainer.batch_size=16", "trainer.eval_every=0",
        "trainer.optimizer=rmsprop", "trainer.lr=1e-3", "trainer.weight_decay=0", "trainer.schedule=constant"]


def build(size: int = 12, channels: int = 1, k: int = 3, canvas: int = 14, **kwargs) -> SCAE:
    settings = dict(part_capsules=5, object_capsules=4, special_features=3, template_size=4, canvas_size=canvas,
                    set_output_dim=8, capsule_hidden=8, capsule_params=4)
    method = SCAE(**{**settings, **kwargs})
    method.configure_clusters(k)
    method.model = method.setup(CapsuleConvNet(channels, size, widths=(8, 8), strides=(2, 1)), InputShape(channels, size))
    return method


# --- geometry ----------------------------------------------------------------------------


def test_geometric_transform_by_hand():
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    raw = torch.tensor([0.3, -0.2, 0.125, 0.1, 0.05, -0.04])
    sx, sy, theta = sig(0.3) + 0.01, sig(-0.2) + 0.01, 2 * math.pi * 0.125
    shear, tx, ty = math.tanh(0.5), math.tanh(0.25), math.tanh(-0.2)
    c, s = math.cos(theta), math.sin(theta)
    upper = np.array([[sx, shear * sy], [0, sy]]) @ np.array([[c, -s], [s, c]])  # scale-shear, then the rotation
    want = np.array([[*upper[0], tx], [*upper[1], ty], [0, 0, 1]])
    assert np.allclose(C.geometric_transform(raw).numpy(), want, atol=1e-6)
    zero = C.geometric_transform(torch.zeros(2, 6))
    assert torch.allclose(zero, torch.diag(torch.tensor([0.51, 0.51, 1.0])).expand(2, 3, 3))  # sigmoid(0) + 0.01, no turn, centred


def pose(scale: float, tx: float = 0.0, ty: float = 0.0) -> torch.Tensor:
    return torch.tensor([[[scale, 0.0, tx], [0.0, scale, ty]]])


def test_render_identity_shift_and_half_scale_by_hand():
    template = torch.arange(1.0, 10.0).view(1, 1, 3, 3)
    # identity on a canvas of the template's size: the template itself
    assert torch.allclose(C.render(template, pose(1.0), 3), template, atol=1e-6)
    # one normalised unit right on a 3-px canvas is one pixel: the columns move right, zeros come in
    shifted = C.render(template, pose(1.0, tx=1.0), 3)
    assert torch.allclose(shifted[0, 0, :, 1:], template[0, 0, :, :2], atol=1e-6) and torch.all(shifted[0, 0, :, 0] == 0)
    # half scale on a 5-px canvas: the template covers pixels 1..3 exactly, zero around it
    half = C.render(template, pose(0.5), 5)[0, 0]
    assert torch.allclose(half[1:4, 1:4], template[0, 0], atol=1e-6)
    assert half.sum().item() == pytest.approx(template.sum().item(), abs=1e-5)
    # a half-pixel shift interpolates bilinearly between neighbours
    mid = C.render(template, pose(1.0, tx=0.5), 3)[0, 0]
    assert torch.allclose(mid[:, 1], (template[0, 0, :, 0] + template[0, 0, :, 1]) / 2, atol=1e-6)


def test_a_rotated_template_turns_a_quarter():
    template = torch.zeros(1, 1, 3, 3)
    template[0, 0, 1, 2] = 1.0  # a dot right of centre
    quarter = C.geometric_transform(torch.tensor([[100.0, 100.0, 0.25, 0.0, 0.0, 0.0]]))  # scale ≈ 1.01, θ = π/2
    out = C.render(template, quarter, 3)[0, 0]
    assert out.argmax().item() == 2 * 3 + 1  # x right → y down (image rows grow downwards): the dot is below centre now


# --- likelihoods ---------------------------------------------------------------------------


def test_pixel_mixture_against_a_direct_loop():
    g = torch.Generator().manual_seed(0)
    image, means = torch.rand(2, 2, 3, 3, generator=g), torch.rand(2, 4, 2, 3, 3, generator=g)
    logits, std = torch.randn(2, 4, 3, 3, generator=g), 0.7
    got = C.pixel_mixture_log_likelihood(image, means, logits, std)
    for b in range(2):
        total = 0.0
        for i in range(3):
            for j in range(3):
                w = torch.softmax(logits[b, :, i, j], 0)
                p = sum(w[c].item() * math.prod(math.exp(-0.5 * ((image[b, ch, i, j] - means[b, c, ch, i, j]).item() / std) ** 2) / (std * math.sqrt(2 * math.pi))
                                                for ch in range(2)) for c in range(4))
                total += math.log(p)
        assert got[b].item() == pytest.approx(total, rel=1e-5)
    # a constant background component, passed on its own, is the same as a (J+1)-th image of it
    value, logit = torch.rand(2, generator=g), torch.tensor(0.4)
    with_bg = C.pixel_mixture_log_likelihood(image, means, logits, std, (value, logit))
    stacked = torch.cat([means, value.view(1, 1, 2, 1, 1).expand(2, 1, 2, 3, 3)], dim=1)
    assert torch.allclose(with_bg, C.pixel_mixture_log_likelihood(image, stacked, torch.cat([logits, logit.expand(2, 1, 3, 3)], dim=1), std), rtol=1e-6)


@pytest.mark.parametrize("normalized", [False, True])
def test_part_mixture_against_a_direct_loop(normalized):
    g = torch.Generator().manual_seed(1)
    B, K, M = 2, 3, 4
    x, presence = torch.randn(B, M, 6, generator=g), torch.rand(B, M, generator=g)
    votes, scales = torch.randn(B, K, M, 6, generator=g), torch.rand(B, K, M, generator=g) + 0.5
    log_a = torch.log(torch.rand(B, K, M, generator=g))
    ll, posterior = C.part_mixture_log_likelihood(x, presence, votes, scales, log_a, normalized=normalized)
    for b in range(B):
        total = 0.0
        for m in range(M):
            weights = [log_a[b, k, m].exp().item() for k in range(K)] + [0.01]
            if normalized:
                weights = [w / sum(weights) for w in weights]
            dens = [math.prod(math.exp(-0.5 * ((x[b, m, d] - votes[b, k, m, d]) / scales[b, k, m]).item() ** 2) / (scales[b, k, m].item() * math.sqrt(2 * math.pi))
                              for d in range(6)) for k in range(K)] + [0.01]
            joint = [w * p for w, p in zip(weights, dens)]
            total += presence[b, m].item() * math.log(sum(joint))
            for k in range(K):
                assert posterior[b, m, k].item() == pytest.approx(joint[k] / sum(joint), rel=1e-4, abs=1e-9)
        assert ll[b].item() == pytest.approx(total, rel=1e-5)


def test_sparsity_terms_by_hand():
    p = torch.tensor([[1.0, 0.0, 0.5], [0.0, 0.2, 0.3]])
    within, between = C.prior_sparsity(p, within_constant=1.0, between_target=0.5)
    assert within.item() == pytest.approx(((1.5 - 1) ** 2 + (0.5 - 1) ** 2) / 2)
    assert between.item() == pytest.approx(((1 - 0.5) ** 2 + (0.2 - 0.5) ** 2 + (0.8 - 0.5) ** 2) / 3)
    post = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.5, 0.5], [0.5, 0.5]]])  # B×M×K
    within, between = C.posterior_sparsity(post)
    assert within.item() == pytest.approx((0.0 + math.log(2)) / 2, abs=1e-6)  # one sure image, one split evenly
    assert between.item() == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)), abs=1e-6)


# --- the Set Transformer -------------------------------------------------------------------


def test_set_transformer_is_invariant_to_the_parts_order_and_ignores_absent_parts():
    torch.manual_seed(0)
    net = SetTransformer(5, outputs=3, layers=2, dim=8, out_dim=12).eval()
    x, presence = torch.randn(2, 6, 5), torch.rand(2, 6) * 0.9 + 0.05
    out = net(x, presence)
    assert out.shape == (2, 3, 12)
    perm = torch.randperm(6)
    assert torch.allclose(net(x[:, perm], presence[:, perm]), out, atol=1e-6)
    presence[:, 0] = 0.0  # an absent part: whatever it carries changes nothing
    out = net(x, presence)
    x[:, 0] = 100.0
    assert torch.allclose(net(x, presence), out, atol=1e-6)


# --- the model --------------------------------------------------------------------------------


def test_the_model_has_the_papers_shapes():
    method = build()
    x = torch.randn(3, 1, 12, 12)
    out = method.forward(x, training=True)
    assert out["parts"]["pose"].shape == (3, 5, 3, 3) and out["parts"]["presence"].shape == (3, 5) and out["parts"]["features"].shape == (3, 5, 3)
    assert out["means"].shape == (3, 5, 1, 14, 14) and out["mixing"].shape == (3, 5, 14, 14)  # M templates (and a background)
    assert out["background"][0].shape == (1,) and out["background"][1].shape == ()
    assert out["objects"]["votes"].shape == (3, 4, 5, 6) and out["objects"]["presence"].shape == (3, 4)
    assert out["posterior"].shape == (3, 5, 4) and bool((out["posterior"].sum(-1) <= 1 + 1e-6).all())
    feats = method.embed(x)
    assert feats.shape == (3, 8) and torch.equal(feats, method.embed(x))  # no noise in evaluation: deterministic
    official = CapsuleConvNet(1, 28)
    assert [(c.out_channels, c.stride[0], c.padding[0]) for c in official.net if isinstance(c, torch.nn.Conv2d)] == [(128, 2, 0), (128, 2, 0), (128, 1, 0), (128, 1, 0)]
    assert official(torch.zeros(1, 1, 40, 40)).shape == (1, 128, 5, 5)  # the code's 5×5×128 on the 40-px canvas


def test_images_land_on_the_canvas_centred_or_shifted_whole():
    method = build(canvas=16)
    x = torch.rand(4, 1, 12, 12)
    centred = method.place(x, training=False)
    assert torch.equal(centred, torch.nn.functional.pad(x, (2, 2, 2, 2)))
    shifted = method.place(x, training=True)
    for b in range(4):
        nz = shifted[b, 0].nonzero()
        r, c = nz.min(0).values.tolist()
        assert 0 <= r <= 4 and 0 <= c <= 4 and torch.equal(shifted[b, 0, r : r + 12, c : c + 12], x[b, 0])
        assert shifted[b].sum().item() == pytest.approx(x[b].sum().item(), rel=1e-6)


def test_stopped_gradients_stop_where_the_code_stops_them():
    method = build()
    out = method.forward(torch.randn(3, 1, 12, 12), training=True)
    pcae = method.model.part_capsules
    out["parts_ll"].sum().backward()
    # the object model explains the parts without moving the templates or the part poses
    assert pcae.templates.grad is None and pcae.alpha.grad is None
    assert pcae.head.weight.grad is not None  # ... but it reaches the encoder through the special features
    method.model.zero_grad(set_to_none=True)
    out = method.forward(torch.randn(3, 1, 12, 12), training=True)
    out["image_ll"].sum().backward()
    assert all(p.grad is None for p in method.model.object_capsules.parameters())  # the image is the parts' alone


def test_noise_and_shifts_are_drawn_for_the_global_batch():
    whole = build()
    whole.seed = 5
    x = torch.rand(4, 1, 12, 12)
    whole.noise.bind(5, whole.dist)
    everything = whole.forward(x, training=True)["objects"]["presence"]
    for rank in (0, 1):
        part = build()
        part.model.load_state_dict(whole.model.state_dict())
        part.seed, part.dist = 5, DistInfo(rank=rank, world_size=2)
        part.noise.bind(5, part.dist)
        mine = part.forward(x[rank * 2 : (rank + 1) * 2], training=True)["objects"]["presence"]
        assert torch.allclose(mine, everything[rank * 2 : (rank + 1) * 2], atol=1e-6)


def test_prediction_is_kmeans_on_the_presences_and_exports_apply_it():
    from clusterbench.cluster.state import assign

    method = build()
    with torch.no_grad():  # as the engine embeds
        feats = method.embed(torch.randn(40, 1, 12, 12))
    ids, info = method.predict(feats, 3, seed=0)
    assert set(info["alternatives"]) == {"posterior"} and int(info["clusters"]["columns"]) == 4
    again, _ = assign(info["clusters"], feats)
    assert np.array_equal(again, ids)


# --- runs ----------------------------------------------------------------------------------------


def test_a_run_trains_logs_its_terms_and_clusters(run_cli):
    r = run_cli(*TINY, "trainer.epochs=2", "trainer.eval_every=1", plots=True)
    assert r.code == 0, r.err
    history = r.history()
    for key in ("image_ll", "parts_ll", "dynamic_l2", "prior_within", "prior_between", "posterior_within", "posterior_between", "object_presence"):
        assert math.isfinite(history[-1][key]), key
    m = r.metrics()
    assert 0 <= m["acc"] <= 1 and "posterior_acc" in m["method_info"] and m["method_info"]["steps"] == 6
    assert "feature_cosine" not in history[0] and "effective_clusters" in history[0]  # presences: no cosine collapse test
    assert (r.run_dir / "samples.png").exists()  # the part templates


def test_resume_continues_rmsprop_and_the_noise_stream(resume_runs):
    runs = resume_runs(*TINY, "seed=2", split=1, total=3)
    state = torch.load(runs.first_checkpoint, weights_only=True)
    assert "noise_gen" in state["method"]
    assert runs.whole.scores() == runs.resumed.scores()
    assert runs.resumed.losses() == same_losses(runs.whole.losses())
    final = [torch.load(r.run_dir / "checkpoint.pt", weights_only=True) for r in (runs.whole, runs.resumed)]
    a, b = (f["optimizer"]["state"] for f in final)
    assert a.keys() == b.keys() and a and all(torch.equal(a[i]["square_avg"], b[i]["square_avg"]) for i in a)
    assert all(torch.equal(final[0]["model"][k], final[1]["model"][k]) for k in final[0]["model"])


@pytest.mark.parametrize("key, value", [("method.part_mixture", "both"), ("method.canvas_size", "8"), ("method.pixel_std", "0"),
                                        ("method.set_heads", "3"), ("method.template_nonlin", "tanh"), ("backbone.padding", "full"),
                                        ("trainer.rmsprop_alpha", "1.0")])
def test_impossible_settings_are_one_line_errors(run_cli, key, value):
    r = run_cli(*TINY, "trainer.epochs=1", f"{key}={value}")
    assert r.code != 0 and key in r.err and "Traceback" not in r.err


def test_small_images_under_valid_strides_say_how_to_fix_it():
    with pytest.raises(ConfigError, match="padding=same"):
        CapsuleConvNet(1, 8)
    assert CapsuleConvNet(1, 8, padding="same")(torch.zeros(1, 1, 8, 8)).shape == (1, 128, 2, 2)


def test_the_paper_form_of_the_part_mixture_trains(run_cli):
    r = run_cli(*TINY, "trainer.epochs=1", "method.part_mixture=paper")
    assert r.code == 0, r.err
    assert r.history()[-1]["parts_ll"] <= 0 or math.isfinite(r.history()[-1]["parts_ll"])


def test_bf16_on_the_cpu_trains(run_cli):
    # the attention mask's −(1 − p)·1e32 and the mixtures' log-sum-exps must survive autocast
    r = run_cli(*TINY, "trainer.epochs=1", "trainer.precision=bf16")
    assert r.code == 0, r.err
    assert math.isfinite(r.history()[-1]["loss"])
