"""MLflow: the run as an MLflow run in a local file store (``mlflow ui --backend-store-uri RUN/mlruns``).

Written through ``MlflowClient`` (the ``mlflow-skinny`` package suffices): the configuration
as params (flattened, ``training.lr``) and whole as the artifact ``config.json``, the scalars
of every record as metrics with their step and time, and the sample grids as artifacts under
``samples/``. Each ``difftk train`` (a resume too) is one MLflow run of the experiment. MLflow 3
keeps the file store in maintenance mode; the logger turns on ``MLFLOW_ALLOW_FILE_STORE`` for it
(a ``tracking_uri`` of one's own, e.g. ``sqlite:///mlflow.db``, needs the full ``mlflow``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
from difftk.options import option

from difftk_trackers.records import flat, folder, require, scalars

#: the longest param value every MLflow store takes; longer values are cut (config.json has them whole)
PARAM_LENGTH = 500


class MLflowLogger:
    """MLflow tracking in a local file store: params, metrics, sample grids (MlflowClient)."""

    @attrs.frozen
    class Config:
        tracking_uri: str | None = option(None, help="where runs are stored; none = the file store RUN/mlruns",
                                          optional=True)
        experiment: str = option("difftk", help="the MLflow experiment the run belongs to")

    def __init__(self, config: Config | None = None) -> None:
        self.config = config if config is not None else self.Config()
        require("mlflow", "mlflow-skinny", "mlflow", "mlflow")
        self.client: Any = None
        self.run_id: str | None = None

    def start(self, run: Any) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        uri = self.config.tracking_uri
        if uri is None:  # MLflow 3 keeps the file store in maintenance mode, behind this switch
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            uri = folder(None, run.directory, "mlruns").absolute().as_uri()
        self.client = MlflowClient(tracking_uri=uri)
        found = self.client.get_experiment_by_name(self.config.experiment)
        experiment = found.experiment_id if found is not None else self.client.create_experiment(self.config.experiment)
        name = run.directory.name if run.directory is not None else None
        self.run_id = self.client.create_run(experiment, run_name=name, tags={"difftk.start_step": str(run.step)}).info.run_id
        params = [Param(key, str(value)[:PARAM_LENGTH]) for key, value in flat(run.config).items()]
        for i in range(0, len(params), 100):  # log_batch takes at most 100 params a call
            self.client.log_batch(self.run_id, params=params[i:i + 100])
        self.client.log_dict(self.run_id, dict(run.config), "config.json")

    def log(self, record: Mapping[str, Any]) -> None:
        when = int(1000 * record["time"]) if "time" in record else None
        for key, value in scalars(record).items():
            self.client.log_metric(self.run_id, key, value, timestamp=when, step=record["step"])

    def image(self, path: Path, step: int) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path="samples")

    def finish(self) -> None:
        if self.run_id is not None:
            self.client.set_terminated(self.run_id)
