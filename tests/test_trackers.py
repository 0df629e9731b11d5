"""logger=tensorboard|mlflow: each epoch's numbers, the final scores, the config and the plots
reach the tracker, written locally; a missing package is a one-line error naming the extra."""

from __future__ import annotations

import builtins

import pytest

TINY = ["dataset=synthetic", "dataset.num_samples=96", "hardware=cpu", "trainer.batch_size=32", "trainer.epochs=3", "trainer.eval_every=1",
        "backbone=strided", "backbone.widths=[8,16]", "method=moco", "method.queue_size=64", "method.head_hidden=32", "method.feature_dim=16"]


def test_tensorboard_gets_every_epoch_the_final_scores_config_and_plots(run_cli):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    r = run_cli(*TINY, "logger=tensorboard", "plots.embedding=false", "plots.clusters=false", plots=True)
    assert r.code == 0, r.err
    events = EventAccumulator(str(r.run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3]
    assert [e.value for e in events.Scalars("train/acc")] == pytest.approx([rec["acc"] for rec in r.history()])
    assert events.Scalars("final/acc")[0].value == pytest.approx(r.metrics()["acc"])
    assert {"plots/confusion", "plots/curves"} <= set(tags["images"])
    assert "config/text_summary" in tags["tensors"]


def test_mlflow_gets_a_run_with_params_metrics_and_plots(run_cli, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    store = (tmp_path / "mlruns").as_uri()
    r = run_cli(*TINY, "logger=mlflow", f"logger.tracking_uri={store}", "plots.embedding=false", "plots.clusters=false", plots=True)
    assert r.code == 0, r.err
    client = mlflow.tracking.MlflowClient(tracking_uri=store)
    (run,) = client.search_runs([client.get_experiment_by_name("clusterbench").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == r.run_dir.name
    assert run.data.params["method.queue_size"] == "64" and run.data.params["trainer.epochs"] == "3"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2, 3]
    assert run.data.metrics["final_acc"] == pytest.approx(r.metrics()["acc"])
    assert {a.path for a in client.list_artifacts(run.info.run_id, "plots")} == {"plots/confusion.png", "plots/curves.png"}


def test_a_missing_tracker_package_is_a_one_line_error_naming_the_extra(run_cli, monkeypatch):
    real_import = builtins.__import__

    def no_mlflow(name, *args, **kwargs):
        if name == "mlflow" or name.startswith("mlflow."):
            raise ImportError("No module named 'mlflow'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mlflow)
    monkeypatch.delitem(__import__("sys").modules, "mlflow", raising=False)
    r = run_cli(*TINY, "logger=mlflow")
    assert r.code == 2 and "pip install 'clusterbench[mlflow]'" in r.err and r.err.count("\n") == 1, r.err
    assert not (r.run_dir / "checkpoint.pt").exists()
