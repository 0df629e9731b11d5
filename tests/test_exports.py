"""What a run leaves behind (features.npy, clusters.npz, model.pt, assignments.csv), and
``clusterbench-predict`` giving a run's own images exactly their assignments back."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from clusterbench import runfolder
from clusterbench.cluster.state import assign, gmm_state, kmeans_state, posterior_state, prototype_state

DATA = ["dataset=synthetic", "dataset.num_samples=96", "hardware=cpu"]
DEEP = [*DATA, "trainer.batch_size=32", "trainer.epochs=2", "trainer.eval_every=0", "backbone=strided", "backbone.widths=[8,16]"]
METHODS = {
    "kmeans": [*DATA, "method=kmeans", "method.restarts=2"],
    "kmeans-pca-spherical": [*DATA, "method=kmeans", "method.pca_dim=5", "method.spherical=true", "method.restarts=2"],
    "gmm": [*DATA, "method=gmm", "method.pca_dim=5"],
    "ae-gmm": [*DATA, "method=ae", "trainer.batch_size=32", "trainer.epochs=2", "backbone.hidden=[16]", "method.decoder_hidden=[16]",
               "trainer.optimizer=adam", "trainer.lr=0.001"],
    "ae-kmeans": [*DATA, "method=ae", "trainer.batch_size=32", "trainer.epochs=2", "backbone.hidden=[16]", "method.decoder_hidden=[16]",
                  "method.cluster=kmeans", "trainer.optimizer=adam", "trainer.lr=0.001"],
    "moco": [*DEEP, "method=moco", "method.queue_size=64", "method.head_hidden=32", "method.feature_dim=16"],
    "pcl": [*DEEP, "method=pcl", "method.queue_size=64", "method.head_hidden=32", "method.feature_dim=16", "method.num_prototypes=[3,6]",
            "method.warmup_epochs=1", "method.estep_restarts=1"],
    "swav-prototypes": [*DEEP, "method=swav", "method.head_hidden=32", "method.feature_dim=16", "method.num_prototypes=3",
                        "method.freeze_prototypes_niters=2"],
    "swav-kmeans": [*DEEP, "method=swav", "method.head_hidden=32", "method.feature_dim=16", "method.num_prototypes=8",
                    "method.freeze_prototypes_niters=2"],
    "deepcluster": [*DEEP, "method=deepcluster", "method.num_prototypes=6", "method.pca_dim=8"],
    "mice": [*DEEP, "method=mice", "method.queue_size=40", "method.feature_dim=8"],
    "infogan": [*DATA, "method=infogan", "trainer.batch_size=32", "trainer.epochs=2", "trainer.eval_every=0", "backbone.width=8",
                "backbone.hidden=32", "method.noise_dim=8", "trainer.lr=2e-4"],
    "scae": [*DATA, "method=scae", "trainer.batch_size=32", "trainer.epochs=2", "trainer.eval_every=0", "backbone.widths=[8,8]",
             "backbone.strides=[2,1]", "method.part_capsules=4", "method.object_capsules=3", "method.template_size=3",
             "method.set_output_dim=8", "method.capsule_hidden=8", "trainer.optimizer=rmsprop", "trainer.lr=1e-3"],
}
KINDS = {"kmeans": "kmeans", "kmeans-pca-spherical": "kmeans", "gmm": "gmm", "ae-gmm": "gmm", "ae-kmeans": "kmeans", "moco": "kmeans",
         "pcl": "kmeans", "swav-prototypes": "prototypes", "swav-kmeans": "kmeans", "deepcluster": "kmeans", "mice": "posterior",
         "infogan": "posterior", "scae": "kmeans"}


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_exports_and_predicts_its_own_images_exactly(run_cli, run_predict, tmp_path, name):
    r = run_cli(*METHODS[name])
    assert r.code == 0, r.err
    own = read_csv(r.run_dir / "assignments.csv")
    assert [row["index"] for row in own] == [str(i) for i in range(96)]
    assert np.array_equal([int(row["cluster"]) for row in own], np.load(r.run_dir / "assignments.npy"))
    assert {row["label"] for row in own} == {"class0", "class1", "class2"}  # the class names

    clusters = dict(np.load(r.run_dir / "clusters.npz", allow_pickle=False))
    assert str(clusters["kind"]) == KINDS[name] and int(clusters["num_clusters"]) == 3
    model = torch.load(r.run_dir / "model.pt", weights_only=True)
    assert model["format"] == runfolder.FORMAT and model["input_shape"] == [1, 8, 8]
    deep = not name.startswith(("kmeans", "gmm"))
    if deep:
        features = np.load(r.run_dir / "features.npy")
        assert features.dtype == np.float16 and features.shape[0] == 96
        assert model["state_dict"] and len(model["mean"]) == 1 and len(model["std"]) == 1
    else:
        assert not (r.run_dir / "features.npy").exists()
    has_confidence = KINDS[name] in ("gmm", "prototypes", "posterior")
    assert all(bool(row["confidence"]) == has_confidence for row in own)
    if has_confidence:
        assert all(0.0 < float(row["confidence"]) <= 1.0 for row in own)

    out = tmp_path / "pred"
    code, stdout, err = run_predict(str(r.run_dir), "--out", str(out))
    assert code == 0, err
    predicted = read_csv(out / runfolder.ASSIGNMENTS)
    assert [row["cluster"] for row in predicted] == [row["cluster"] for row in own]
    assert [row["confidence"] for row in predicted] == [row["confidence"] for row in own]
    scores = r.metrics()
    predicted_scores = __import__("json").loads((out / "metrics.json").read_text())
    assert predicted_scores["acc"] == scores["acc"] and predicted_scores["nmi"] == scores["nmi"]
    assert "96 images" in stdout


def test_predict_assigns_new_images_and_checks_their_shape(run_cli, run_predict, tmp_path):
    r = run_cli(*METHODS["moco"])
    assert r.code == 0, r.err
    code, _, err = run_predict(str(r.run_dir), "dataset.data_seed=7", "dataset.num_samples=30", "--out", str(tmp_path / "new"))
    assert code == 0, err
    rows = read_csv(tmp_path / "new" / runfolder.ASSIGNMENTS)
    assert len(rows) == 30 and all(0 <= int(row["cluster"]) < 3 for row in rows)
    code, _, err = run_predict(str(r.run_dir), "dataset.image_size=12")
    assert code == 2 and "1×12×12" in err and "dataset.image_size=8" in err and err.count("\n") == 1
    code, _, err = run_predict(str(r.run_dir), "method=kmeans")
    assert code == 2 and "dataset overrides only" in err


def test_predict_needs_a_run_folder_of_this_version(run_cli, run_predict, tmp_path):
    code, _, err = run_predict(str(tmp_path / "nowhere"))
    assert code == 2 and "nowhere is not a folder" in err
    (tmp_path / "old").mkdir()
    code, _, err = run_predict(str(tmp_path / "old"))
    assert code == 2 and "model.pt not found" in err and "older" in err
    r = run_cli(*METHODS["kmeans"])
    state = torch.load(r.run_dir / "model.pt", weights_only=True)
    torch.save({**state, "version": 0}, r.run_dir / "model.pt")
    code, _, err = run_predict(str(r.run_dir))
    assert code == 2 and "format version 0" in err
    (r.run_dir / "model.pt").write_bytes(b"not a zip")
    code, _, err = run_predict(str(r.run_dir))
    assert code == 2 and "not a readable clusterbench model" in err


def test_a_budget_stopped_run_exports_the_model_it_evaluated(run_cli, run_predict, monkeypatch, tmp_path):
    """The budget stops mid-epoch: checkpoint.pt holds the last whole epoch, model.pt the scored model."""
    from clusterbench import engine

    checks = {"n": 0}

    def out_of_time(self) -> bool:  # the budget runs out after the 2nd step of epoch 2 (checks: epoch start, each step)
        checks["n"] += 1
        return checks["n"] >= 7

    monkeypatch.setattr(engine.Clock, "out_of_time", property(out_of_time))
    r = run_cli(*METHODS["moco"], "trainer.epochs=5", "trainer.max_minutes=60")
    assert r.code == 0, r.err
    info = r.metrics()["method_info"]
    assert info["stopped_early"] and info["steps"] == 5
    checkpoint = torch.load(r.run_dir / "checkpoint.pt", weights_only=True)
    assert checkpoint["step"] == 3  # the checkpoint is behind the evaluated model ...
    model = torch.load(r.run_dir / "model.pt", weights_only=True)
    assert any(not torch.equal(model["state_dict"][k], v) for k, v in checkpoint["model"].items() if v.is_floating_point())
    code, _, err = run_predict(str(r.run_dir), "--out", str(tmp_path / "p"))  # ... and model.pt is the scored one
    assert code == 0, err
    assert [row["cluster"] for row in read_csv(tmp_path / "p" / runfolder.ASSIGNMENTS)] == \
        [row["cluster"] for row in read_csv(r.run_dir / runfolder.ASSIGNMENTS)]


def test_a_resnet_backbone_loads_into_torchvision_with_only_fc_missing(run_cli):
    pytest.importorskip("torchvision")
    r = run_cli(*DATA, "dataset.channels=3", "dataset.image_size=32", "dataset.num_samples=64", "method=moco", "backbone=resnet18",
                "backbone.width=8", "backbone.cifar_stem=false", "trainer.batch_size=32", "trainer.epochs=1", "trainer.eval_every=0",
                "method.queue_size=64", "method.head_hidden=16", "method.feature_dim=8", "augment=mocov2")
    assert r.code == 0, r.err
    weights = torch.load(r.run_dir / "model.pt", weights_only=True)["backbone"]
    missing, unexpected = _torchvision_resnet18(width=8).load_state_dict(weights, strict=False)
    assert sorted(missing) == ["fc.bias", "fc.weight"] and unexpected == []


def _torchvision_resnet18(width: int) -> torch.nn.Module:
    """torchvision's ResNet-18 with every channel count scaled by width/64 (same module names)."""
    import torchvision

    net = torchvision.models.resnet18()
    scale = width / 64

    def shrink(module: torch.nn.Module) -> None:
        for name, child in module.named_children():
            if isinstance(child, torch.nn.Conv2d):
                cin = child.in_channels if child.in_channels == 3 else int(child.in_channels * scale)
                setattr(module, name, torch.nn.Conv2d(cin, int(child.out_channels * scale), child.kernel_size, child.stride, child.padding, bias=False))
            elif isinstance(child, torch.nn.BatchNorm2d):
                setattr(module, name, torch.nn.BatchNorm2d(int(child.num_features * scale)))
            else:
                shrink(child)

    shrink(net)
    net.fc = torch.nn.Linear(int(512 * scale), 1000)
    return net


def test_rerunning_into_a_folder_with_a_checkpoint_is_refused(run_cli, tmp_path):
    args = METHODS["moco"]
    first = run_cli(*args, run_dir=tmp_path / "same")
    assert first.code == 0, first.err
    before = {p.name: p.read_bytes() for p in (tmp_path / "same").rglob("*") if p.is_file()}
    again = run_cli(*args, run_dir=tmp_path / "same")
    assert again.code == 2 and "resume=true" in again.err and "hydra.run.dir" in again.err and again.err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in (tmp_path / "same").rglob("*") if p.is_file()} == before  # nothing touched
    resumed = run_cli(*args, "resume=true", run_dir=tmp_path / "same")
    assert resumed.code == 0, resumed.err


def test_cluster_states_assign_by_hand():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.1], [0.9, 1.0], [0.1, 0.9]])
    ids, conf = assign(kmeans_state(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), normalize=False), x)
    assert ids.tolist() == [0, 1, 2, 2] and conf is None  # [0.9, 1]: ‖·‖² 1.01 to [1, 0], 0.81 to [0, 1]
    # spherical k-means compares directions: [0.9, 1.0] is nearer (cosine) to [0, 1] than to [1, 0]
    ids, _ = assign(kmeans_state(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), normalize=False, spherical=True), x[1:])
    assert ids.tolist() == [0, 1, 1]
    # PCA projection first: the first component is the x axis, so only x decides
    pca = {"pca_mean": np.array([0.5, 0.5], np.float32), "pca_components": np.array([[1.0, 0.0]], np.float32)}
    ids, _ = assign(kmeans_state(torch.tensor([[-0.5], [0.5]]), normalize=False, pca=pca), x)
    assert ids.tolist() == [0, 1, 1, 0]
    # prototypes: argmax cosine, softmax confidence at the temperature
    ids, conf = assign(prototype_state(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), temperature=0.5), torch.tensor([[3.0, 0.0], [1.0, 1.0]]))
    assert ids.tolist()[0] == 0
    assert conf[0] == pytest.approx(np.exp(2.0) / (np.exp(2.0) + 1.0), rel=1e-6)  # cosines 1 and 0, over τ = 0.5
    assert conf[1] == pytest.approx(0.5, rel=1e-6)  # equal cosines: a tie
    # posterior: the first K columns already are q(z|x)
    ids, conf = assign(posterior_state(2), torch.tensor([[0.2, 0.8, 0.5, 0.5], [0.9, 0.1, 0.0, 1.0]]))
    assert ids.tolist() == [1, 0] and conf.tolist() == pytest.approx([0.8, 0.9])


def test_gmm_state_round_trips_through_npz(tmp_path):
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (50, 3)), rng.normal(6, 1, (50, 3))])
    for kind in ("full", "tied", "diag", "spherical"):
        model = GaussianMixture(2, covariance_type=kind, random_state=0).fit(x)
        runfolder.write_clusters(tmp_path, gmm_state(model))
        ids, conf = assign(runfolder.read_clusters(tmp_path), x.astype(np.float32))
        assert np.array_equal(ids, model.predict(x.astype(np.float32).astype(np.float64)))
        assert np.allclose(conf, model.predict_proba(x).max(1), atol=1e-6)
