"""``logger=mlflow``: an MLflow run, in a local file store (``mlruns`` beside the outputs) unless
``logger.tracking_uri`` names a server or a database (``sqlite:///mlflow.db`` with the full
``mlflow`` package); the run's name is its folder's. Params: the flattened
resolved config; metrics: each epoch's numbers at its step and the final scores; artifacts:
the plots and metrics.json."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from clusterbench.trackers.base import Tracker, flatten, numeric, require

MAX_PARAM = 500  # MLflow's limit on a parameter value's length


class MLflowTracker(Tracker):
    name = "mlflow"

    def __init__(self, tracking_uri: Optional[str] = None, experiment: str = "clusterbench") -> None:
        self.mlflow = require("mlflow", "mlflow")
        self.tracking_uri, self.experiment = tracking_uri, experiment
        self.active = False

    def start(self, config: Mapping[str, Any], run_dir: Path, run_name: str) -> None:
        uri = self.tracking_uri or (run_dir.resolve().parent / "mlruns").as_uri()
        if uri.startswith("file:"):
            # MLflow ≥ 3.x keeps its file store in maintenance mode and refuses it unless told: it is
            # the store that needs no server and no database (mlflow-skinny has no SQLAlchemy)
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.mlflow.set_tracking_uri(uri)
        self.mlflow.set_experiment(self.experiment)
        self.mlflow.start_run(run_name=run_name)
        self.active = True
        params = {k: v[:MAX_PARAM] for k, v in flatten(config).items()}
        keys = list(params)
        for i in range(0, len(keys), 100):  # the API takes at most 100 params a call
            self.mlflow.log_params({k: params[k] for k in keys[i : i + 100]})

    def log_epoch(self, record: Mapping[str, Any], step: int) -> None:
        stage = record.get("stage")
        self.mlflow.log_metrics(numeric(record, f"{stage}_" if stage else ""), step=step)

    def log_final(self, metrics: Mapping[str, Any]) -> None:
        self.mlflow.log_metrics(numeric(metrics, "final_"))

    def log_images(self, paths: Sequence[Path]) -> None:
        for path in paths:
            self.mlflow.log_artifact(str(path), artifact_path="plots")

    def close(self, failed: bool = False) -> None:
        if self.active:
            self.mlflow.end_run(status="FAILED" if failed else "FINISHED")
            self.active = False
