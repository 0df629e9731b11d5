"""Sweeps: folders named by overrides, failures recorded, finished jobs skipped on re-run,
runs appended to the store, and the nightly suite command end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from clusterbench.report import store
from clusterbench.report.suite import load_suite, main as suite_main


def test_rerunning_a_sweep_skips_finished_jobs_and_retries_failed_ones(run_cli, tmp_path):
    sweep = tmp_path / "sweep"
    args = ("-m", "method=kmeans", "dataset=synthetic", "method.num_clusters=3,1", "plots.enabled=false", f"hydra.sweep.dir={sweep}")
    assert run_cli(*args).code == 1
    done = sweep / "dataset=synthetic,method.num_clusters=3,method=kmeans"
    first = json.loads((done / "metrics.json").read_text())
    assert first["seed"] == 0 and first["overrides"] == ["method=kmeans", "dataset=synthetic", "method.num_clusters=3", "plots.enabled=False"]  # as Hydra writes it
    again = run_cli(*args)
    assert again.code == 1  # the failing job is tried again and fails again
    assert f"skip: {done} already holds this finished run" in again.out
    assert json.loads((done / "metrics.json").read_text())["run_id"] == first["run_id"]
    forced = run_cli(*args, "rerun=true")
    assert json.loads((done / "metrics.json").read_text())["run_id"] != first["run_id"]
    assert "skip:" not in forced.out


def test_a_changed_config_in_the_same_folder_is_not_skipped(run_cli, tmp_path):
    sweep = tmp_path / "sweep"
    run_cli("-m", "method=kmeans", "dataset=synthetic", "seed=0", "plots.enabled=false", f"hydra.sweep.dir={sweep}")
    # same folder name (plots.* is excluded from it) but a different computation: must run
    r = run_cli("-m", "method=kmeans", "dataset=synthetic", "seed=0", "plots.enabled=false", "dataset.noise=0.3", f"hydra.sweep.dir={sweep}")
    assert "skip:" not in r.out


def test_runs_are_appended_to_the_store(run_cli, tmp_path):
    db = tmp_path / "results.sqlite"
    run_cli("method=kmeans", "dataset=synthetic", "plots.enabled=false", f"store={db}", "night=2026-11-20")
    run_cli("method=kmeans", "dataset=synthetic", "plots.enabled=false", f"store={db}", "night=2026-11-20", "method.num_clusters=1")
    rows = store.load(db, "2026-11-20")
    assert sorted(r.status for r in rows) == ["completed", "failed"]
    ok = next(r for r in rows if r.status == "completed")
    assert ok.method == "kmeans" and ok.dataset == "synthetic" and ok.config_hash and 0 <= ok.metrics["acc"] <= 1
    assert "fit" in ok.timings and ok.run_dir


def test_joblib_launcher_runs_a_local_parallel_sweep(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "clusterbench", "-m", "method=kmeans", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "dataset=synthetic",
           "seed=0,1", "plots.enabled=false", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.parent.name for p in sweep.glob("*/metrics.json")) == ["dataset=synthetic,method=kmeans,seed=0", "dataset=synthetic,method=kmeans,seed=1"]


def test_suite_file_is_type_checked(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nout: o\nstore: s\nentries:\n  - name: a\n    methods: kmeans\n    datasets: [digits]\n    seeds: [zero]\n")
    with pytest.raises(ValueError, match="suite file"):
        load_suite(bad)
    assert load_suite(__import__("pathlib").Path(__file__).resolve().parents[1] / "benchmarks" / "suites" / "nightly.yaml").entries


def test_nightly_suite_runs_stores_reports_and_gates(tmp_path, capsys):
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        f"name: tiny\nout: {tmp_path}/nightly\nstore: {tmp_path}/nightly/results.sqlite\n"
        "entries:\n"
        "  - name: synth\n    methods: [kmeans, gmm]\n    datasets: [synthetic]\n    seeds: [0, 1]\n"
        "    overrides: [plots.enabled=false]\n"
    )
    assert suite_main([str(suite), "--night", "2026-11-21"]) == 0
    out = capsys.readouterr().out
    assert "kmeans (mean)" in out and "gmm (mean)" in out
    rows = store.load(tmp_path / "nightly" / "results.sqlite", "2026-11-21")
    assert len(rows) == 4 and all(r.status == "completed" for r in rows)
    assert (tmp_path / "nightly" / "2026-11-21" / "report.md").exists()
    # a pre-empted night started again: every job is skipped, nothing is stored twice
    assert suite_main([str(suite), "--night", "2026-11-21"]) == 0
    assert len(store.load(tmp_path / "nightly" / "results.sqlite", "2026-11-21")) == 4
    # with a baseline that this night cannot meet, the gate fails the suite
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"tolerance": {"acc": 0.0}, "entries": [{"row": "kmeans", "column": "synthetic", "acc": 1.01}]}))
    suite.write_text(suite.read_text() + f"baseline: {baseline}\n")
    assert suite_main([str(suite), "--night", "2026-11-21"]) == 1
    assert "REGRESSION kmeans on synthetic: ACC" in capsys.readouterr().err


def test_a_crashing_job_is_recorded_and_the_sweep_goes_on(run_cli, tmp_path, monkeypatch):
    from clusterbench.methods.gmm import GMMMethod

    def crash(self, data, ctx):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(GMMMethod, "fit_predict", crash)
    sweep = tmp_path / "sweep"
    r = run_cli("-m", "method=gmm,kmeans", "dataset=synthetic", f"hydra.sweep.dir={sweep}")
    assert r.code == 1 and "1 job(s) of the sweep failed" in r.err
    error = json.loads((sweep / "dataset=synthetic,method=gmm" / "error.json").read_text())
    assert error["error"].startswith("RuntimeError: simulated bug") and error["method"] == "gmm"
    assert (sweep / "dataset=synthetic,method=kmeans" / "metrics.json").exists()
    # outside a sweep, a bug keeps its traceback: it is not a user error
    with pytest.raises(RuntimeError, match="simulated bug"):
        run_cli("method=gmm", "dataset=synthetic")
