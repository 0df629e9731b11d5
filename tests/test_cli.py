"""The command line end to end: results written, and every bad input a one-line error."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

RESULT_KEYS = {"nmi", "acc", "ari", "purity", "n_samples", "n_clusters", "method", "dataset", "split", "seed", "timings", "versions", "git"}


def test_default_run_writes_metrics_assignments_and_hydra_configs(run_cli):
    r = run_cli("method=kmeans")
    assert r.code == 0, r.err
    m = r.metrics()
    assert RESULT_KEYS <= set(m)
    assert (m["method"], m["dataset"], m["split"], m["n_samples"], m["n_clusters"]) == ("kmeans", "digits", "all", 1797, 10)
    assert 0.6 < m["acc"] <= 1 and 0 < m["nmi"] <= 1 and 0 < m["ari"] <= 1
    assert {"load", "features", "fit", "evaluate"} <= set(m["timings"])
    ids = np.load(r.run_dir / "assignments.npy")
    assert ids.shape == (1797,) and ids.dtype == np.int64
    assert (r.run_dir / ".hydra" / "config.yaml").exists()
    assert "NMI" in r.out and "ACC" in r.out and "digits" in r.out  # the closing table
    assert not list(r.run_dir.glob(".*.tmp"))  # atomic writes leave no temp files


def test_same_seed_same_assignments_other_seed_runs(run_cli):
    a = run_cli("method=kmeans", "method.restarts=1", "seed=3")
    b = run_cli("method=kmeans", "method.restarts=1", "seed=3")
    assert np.array_equal(np.load(a.run_dir / "assignments.npy"), np.load(b.run_dir / "assignments.npy"))
    assert run_cli("method=kmeans", "method.restarts=1", "seed=4").metrics()["seed"] == 4


@pytest.mark.parametrize(
    "args",
    [
        ("method=gmm",),
        ("method=gmm", "method.covariance_type=diag", "method.pca_dim=null"),
        ("method=kmeans", "method.backend=torch", "method.pca_dim=20", "method.spherical=true"),
        ("method=kmeans", "dataset=synthetic", "dataset.split=test", "method.num_clusters=5"),
        ("method=kmeans", "dataset=synthetic", "dataset.limit=90", "hardware=cpu"),
    ],
)
def test_classical_methods_run_on_small_data(run_cli, args):
    r = run_cli(*args)
    assert r.code == 0, r.err
    m = r.metrics()
    assert 0 <= m["acc"] <= 1 and m["n_clusters"] == (5 if "method.num_clusters=5" in args else m["n_classes"])
    if "dataset.limit=90" in args:
        assert m["n_samples"] == 90
    if "dataset.split=test" in args:
        assert m["split"] == "test" and m["n_samples"] == 100


def test_kmeans_finds_the_synthetic_classes(run_cli):
    # 3 balanced classes: chance is ≈ 0.36; shifted patterns keep pixel k-means near 0.86
    assert run_cli("method=kmeans", "dataset=synthetic").metrics()["acc"] > 0.75


BAD_INPUTS = [
    (("method=foo",), "method=foo is not a known option; choose one of: ae, deepcluster, gmm, infogan, kmeans, mice, moco, pcl, scae, swav"),
    (("dataset=cifar11",), "dataset=cifar11 is not a known option"),
    (("method.nitre=3",), "unknown config key 'method.nitre'; valid keys there: backend"),
    (("bogus=1",), "unknown config key 'bogus'"),
    (("seed=abc",), "seed: Value 'abc'"),
    (("seed=1.5",), "seed: Value '1.5'"),
    (("seed=-1",), "seed: -1 is negative"),
    (("method.num_clusters=1",), "method.num_clusters: 1 is fewer than 2"),
    (("method.num_clusters=5000",), "method.num_clusters: 5000 clusters but only 1797 images"),
    (("method.pca_dim=65",), "method.pca_dim: 65 is larger than the 64 features"),
    (("method.pca_dim=0",), "method.pca_dim: 0 is not allowed"),
    (("method.restarts=0",), "method.restarts: 0 is not allowed"),
    (("dataset.limit=3",), "dataset.limit: 3 is fewer than the 10 classes"),
    (("dataset.split=train",), "dataset.split: 'train' is not a split of this dataset; use all"),
    (("dataset.split=val",), "dataset.split: Invalid value 'val'"),
    (("method=gmm", "method.covariance_type=round"), "method.covariance_type: Invalid value 'round'"),
    (("hardware.threads=0",), "hardware.threads: 0 is not a thread count"),
    (("x=[",), "cannot parse the override 'x=['"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_error_with_nonzero_exit(run_cli, args, message):
    r = run_cli(*args if any(a.startswith("method=") for a in args) else ("method=kmeans", *args))
    assert r.code == 2
    lines = [line for line in r.err.splitlines() if line.strip() and not line.startswith("\r")]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.err
    assert message in lines[0]
    assert "Traceback" not in r.err + r.out
    assert not (r.run_dir / "metrics.json").exists()


def test_missing_dataset_offline_names_root_files_and_fix(run_cli, tmp_path):
    r = run_cli("method=kmeans", "dataset=mnist", f"dataset.root={tmp_path}/nowhere")
    assert r.code == 2 and "Traceback" not in r.err
    line = r.err.strip().splitlines()[-1]
    assert f"{tmp_path}/nowhere" in line and "train-images-idx3-ubyte" in line
    assert "dataset.root" in line and "dataset.download=true" in line
    assert not (r.run_dir / "metrics.json").exists()


def test_corrupt_dataset_file_is_named(run_cli, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 20)  # a header cut short
    r = run_cli("method=kmeans", "dataset=mnist", f"dataset.root={tmp_path}")
    assert r.code == 2 and "Traceback" not in r.err
    assert str(raw) in r.err.strip().splitlines()[-1]
    assert not (r.run_dir / "metrics.json").exists()


def test_gpu_requested_without_one_is_a_clear_error(run_cli):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    r = run_cli("method=kmeans", "hardware=gpu")
    assert r.code == 2 and "hardware=cpu or hardware=auto" in r.err


def test_multirun_goes_on_past_a_failing_job_and_exits_nonzero(run_cli, tmp_path, monkeypatch):
    sweep = tmp_path / "sweep"
    r = run_cli("-m", "method=kmeans", "method.num_clusters=2,1", f"hydra.sweep.dir={sweep}")
    assert r.code == 1
    ok = json.loads((sweep / "method.num_clusters=2,method=kmeans" / "metrics.json").read_text())
    assert ok["n_clusters"] == 2
    failed = json.loads((sweep / "method.num_clusters=1,method=kmeans" / "error.json").read_text())
    assert failed["status"] == "failed" and "method.num_clusters" in failed["error"]
    assert not (sweep / "method.num_clusters=1,method=kmeans" / "metrics.json").exists()


def test_python_dash_m_entry_point(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "clusterbench", "method=kmeans", "dataset=synthetic", f"hydra.run.dir={tmp_path}/run"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["dataset"] == "synthetic"
    bad = subprocess.run([sys.executable, "-m", "clusterbench", "method=nope"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


def test_the_wheel_ships_the_configs(tmp_path):
    """A plain `pip install .` must carry conf/ inside the package (pkg://clusterbench.conf)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(root)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("clusterbench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for group, option in [("method", "kmeans"), ("method", "gmm"), ("dataset", "digits"), ("dataset", "mnist"), ("backbone", "pixels"), ("hardware", "auto")]:
        assert f"clusterbench/conf/{group}/{option}.yaml" in names
    assert "clusterbench/conf/config.yaml" in names and "clusterbench/conf/__init__.py" in names


def test_run_writes_confusion_and_embedding_plots(run_cli):
    r = run_cli("method=kmeans", "dataset=synthetic", "plots.embedding_points=200", plots=True)
    assert r.code == 0, r.err
    for name in ("confusion.png", "embedding.png"):
        assert (r.run_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (r.run_dir / "curves.png").exists()  # k-means logs no epochs
    assert "plots" in r.metrics()["timings"]
    assert not list(run_cli("method=kmeans", "dataset=synthetic", "plots.enabled=false").run_dir.glob("*.png"))


def test_help_is_quick_lists_what_a_user_picks_and_imports_no_torch(tmp_path):
    code = ("import sys; sys.argv = ['clusterbench', '--help']; from clusterbench.cli import main; main(); "
            "print('TORCH', 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.rstrip().endswith("TORCH False")  # the heavy libraries load only when a run needs them
    assert "schema/" not in out and "method_dataset:" not in out
    for method in ("moco", "pcl", "swav", "deepcluster", "mice", "ae", "kmeans", "gmm"):
        assert f"\n  {method} " in out
    for dataset in ("digits (default)", "mnist", "cifar10", "cifar100", "stl10", "imagenet_dog", "folder"):
        assert f"\n  {dataset} " in out
    assert "Examples:" in out and "clusterbench -m " in out and "backbone=  " in out


def test_cfg_job_is_resolved_names_the_recipe_and_runs_nothing(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("CLUSTERBENCH_DATA", str(tmp_path / "data"))
    run = run_cli("method=pcl", "dataset=mnist", "--cfg", "job")
    assert run.code == 0, run.err
    assert run.out.startswith("# recipe: method_dataset/pcl_mnist.yaml — ") and f"root: {tmp_path / 'data'}" in run.out and "${" not in run.out
    assert "queue_size: 64" in run.out  # the recipe's value is in the composed config
    assert not run.run_dir.exists()  # nothing ran, no folder
    other = run_cli("dataset=synthetic", "method.queue_size=8", "--cfg", "job")
    assert other.out.startswith("# recipe: none for moco × synthetic: the generic defaults") and "queue_size: 8" in other.out
    bad = run_cli("method=nope", "--cfg", "job")
    assert bad.code == 2 and bad.err.startswith("error: method=nope is not a known option")


def test_a_key_of_the_recipes_backbone_names_the_plus_form(run_cli):
    bad = run_cli("method=swav", "dataset=cifar10", "backbone.cifar_stem=false", "--cfg", "job")
    assert bad.code == 2 and "write +backbone.cifar_stem=..." in bad.err and bad.err.count("\n") == 1
    good = run_cli("method=swav", "dataset=cifar10", "+backbone.cifar_stem=false", "--cfg", "job")
    assert good.code == 0 and "name: resnet18" in good.out and "cifar_stem: false" in good.out
