"""MLflow: open or reattach a run, log params, tags, metrics and artifacts, close it.

Everything goes through an explicit `MlflowClient`, never MLflow's global active run, so
that many runs (sweep trials) can be driven from one process.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any, Literal

import torch
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from arnn import record
from arnn.config import TrainConfig, dotted
from arnn.errors import UsageError
from arnn.models import model_entry
from arnn.provenance import merged_history, provenance_tags
from arnn.train import EpochMetrics, Result

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "arnn"
RunStatus = Literal["FINISHED", "FAILED", "KILLED"]


def resolve_tracking_uri(flag: str | None) -> str:
    """--tracking-uri, else $MLFLOW_TRACKING_URI, else SQLite in the working directory."""
    return flag or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


LOCAL_SCHEMES = ("sqlite:", "file:")


def config_params(config: TrainConfig) -> dict[str, str]:
    """Every setting of the run as flat string params, by section (`optim.lr`): a model's
    own options as model.KEY (an LSTM logs no model.eps) and the task's as task.KEY,
    defaults filled in; `runtime.kernel` only where it chooses the recurrence's path."""
    params = dotted(config.model_dump(mode="json"))
    if not model_entry(config.model.name).kernel_choice_applies(config.model.options):
        del params["runtime.kernel"]
    params["schedule.length_unit"], params["schedule.length"] = config.length
    return {k: "" if v is None else str(v) for k, v in params.items()}


def is_local_store(tracking_uri: str) -> bool:
    """A store in this machine's files (SQLite, a folder), which another machine cannot
    reach: a cluster's workers would each write their trials into a file of their own."""
    return tracking_uri.startswith(LOCAL_SCHEMES) or "://" not in tracking_uri


class TrackedRun:
    """One MLflow run. `start` opens a new one, `attach` reopens one by id."""

    def __init__(self, client: MlflowClient, run_id: str):
        self.client = client
        self.run_id = run_id
        self._last_epoch: int | None = None  # read from the store on the first log_epoch

    @classmethod
    def start(
        cls,
        *,
        tracking_uri: str,
        experiment: str,
        run_name: str | None = None,
        params: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
        parent_run_id: str | None = None,
    ) -> TrackedRun:
        client = connect(tracking_uri)
        tags = {**provenance_tags(), **(tags or {})}  # given tags win: a driver's provenance
        tags.setdefault(record.GIT_COMMITS, tags[record.GIT_COMMIT])
        if parent_run_id is not None:
            tags["mlflow.parentRunId"] = parent_run_id
        run = client.create_run(
            experiment_id=experiment_id(client, experiment), tags=tags, run_name=run_name
        )
        tracked = cls(client, run.info.run_id)
        if params:
            tracked.log_params(params)
        return tracked

    @classmethod
    def find(
        cls,
        *,
        tracking_uri: str,
        experiment: str,
        tags: dict[str, str],
        params: dict[str, str] | None = None,
    ) -> TrackedRun | None:
        """The newest run of `experiment` that carries all of `tags` (and `params`), or
        None."""
        client = connect(tracking_uri)
        found = client.get_experiment_by_name(experiment)
        if found is None:
            return None
        conditions = [f"tags.`{k}` = '{v}'" for k, v in tags.items()]
        conditions += [f"params.`{k}` = '{v}'" for k, v in (params or {}).items()]
        query = " and ".join(conditions)
        runs = client.search_runs(
            [found.experiment_id], filter_string=query, order_by=["start_time DESC"], max_results=1
        )
        return cls(client, runs[0].info.run_id) if runs else None

    @classmethod
    def attach(cls, *, tracking_uri: str, run_id: str) -> TrackedRun:
        tracked = cls(connect(tracking_uri), run_id)
        tracked.reopen()
        return tracked

    def log_params(self, params: dict[str, str]) -> None:
        self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in params.items()])

    def set_tags(self, tags: dict[str, Any]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(self, values: dict[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step) for k, v in values.items() if v is not None]
        self.client.log_batch(self.run_id, metrics=metrics)

    def log_series(self, key: str, values: list[float], first_step: int = 1) -> None:
        """One metric's history, values[i] at step first_step + i, in batches of 1,000."""
        now = int(time.time() * 1000)
        metrics = [Metric(key, float(v), now, first_step + i) for i, v in enumerate(values)]
        for start in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[start : start + 1000])

    def last_logged_epoch(self) -> int:
        """The last epoch this run holds metrics for (0 for none)."""
        history = self.client.get_metric_history(self.run_id, "val_accuracy")
        return max((m.step for m in history), default=0)

    def log_epoch(self, metrics: EpochMetrics, extra: dict[str, float] | None = None) -> None:
        """An epoch's metrics (and `extra` values at the same step), once: a run resumed
        from a checkpoint older than its last logged epoch redoes those epochs (with the
        same numbers: same seed, same state), and they are not logged again."""
        if self._last_epoch is None:
            self._last_epoch = self.last_logged_epoch()
        if metrics.epoch <= self._last_epoch:
            return
        self._last_epoch = metrics.epoch
        values = metrics.as_dict()
        epoch = values.pop("epoch")
        values["epoch_seconds"] = values.pop("seconds")
        self.log_metrics({**values, **(extra or {})}, step=epoch)

    def log_result(self, result: Result, config: TrainConfig) -> None:
        """Final metrics, the best-validation weights as `model/weights.pt`, status tags."""
        self.set_tags(
            {
                record.PARAMETERS: result.parameters,
                record.DEVICE: result.device,
                record.STATUS: result.status,
                **({record.DIVERGED_AT: result.diverged_at} if result.diverged_at else {}),
            }
        )
        self.log_metrics(
            {
                "best_val_accuracy": result.best_val_accuracy,
                "best_epoch": result.best_epoch,
                "test_accuracy": result.test_accuracy,
                "test_loss": result.test_loss,
                "seconds_per_epoch": result.seconds_per_epoch,
            }
        )
        if result.best_state is not None:
            self.log_weights(result.best_state, config)

    def log_weights(self, state: dict[str, torch.Tensor], config: TrainConfig) -> None:
        """Weights with the configuration that made them, as the artifact model/weights.pt."""
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "weights.pt"
            state = {k: v.cpu() for k, v in state.items()}
            torch.save({"config": config.model_dump(mode="json"), "state_dict": state}, path)
            self.client.log_artifact(self.run_id, str(path), artifact_path="model")

    def finish(self, status: RunStatus = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)

    def close(self, status: RunStatus, label: str) -> None:
        """Finish with MLflow's `status` and say why in the tag arnn.status (pruned, ...)."""
        self.set_tags({record.STATUS: label})
        self.finish(status)

    def reopen(self, provenance: dict[str, str] | None = None) -> None:
        """RUNNING again, with the provenance of the code that goes on with it (this
        process's unless given) and every commit that has computed part of it."""
        previous = self.client.get_run(self.run_id).data.tags
        self.client.update_run(self.run_id, status="RUNNING")
        self.set_tags(merged_history(previous, provenance or provenance_tags()))

    @property
    def status(self) -> str:
        return self.client.get_run(self.run_id).info.status

    def children(self, experiment: str) -> list:
        """The runs nested under this one (mlflow.entities.Run objects)."""
        exp = self.client.get_experiment_by_name(experiment)
        return self.client.search_runs(
            [exp.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{self.run_id}'"
        )


def quiet_mlflow() -> None:
    """MLflow logs its SQLite schema migrations at INFO on every new store: keep our
    commands' output to what they say themselves."""
    logging.getLogger("mlflow").setLevel(logging.WARNING)


def connect(tracking_uri: str) -> MlflowClient:
    """A client for the tracking store; an unusable URI is one UsageError line."""
    quiet_mlflow()
    try:
        client = MlflowClient(tracking_uri=tracking_uri)
        client.search_experiments(max_results=1)  # fails now, not after training
    except (MlflowException, OSError, ValueError) as error:
        first_line = (
            str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        )
        raise UsageError(f"--tracking-uri: cannot use {tracking_uri!r}: {first_line}") from None
    return client


# MLflow 3's UI opens an experiment on its GenAI pages unless the experiment says it is
# for model training (the tag its own UI sets when one chooses "Model training").
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
UI_DEFAULT = "http://127.0.0.1:5000"  # where `arnn ui` serves
# MLflow's runs table nests child runs (a sweep's trials) under their parent, collapsed,
# only when it is sorted by start time, its default; sorted by name, every run is a row of
# its own, so the trials' names are in the table as it opens (and t01, t02, ... in order).
BY_RUN_NAME = "tags.`mlflow.runName`"
RUNS_BY_NAME = "orderByKey=" + urllib.parse.quote(BY_RUN_NAME) + "&orderByAsc=true"
# The runs table shows the columns of its view: by default Created, Duration, Dataset,
# Source and Models, none of a trial's numbers. MLflow 3.17 keeps a saved view in the
# experiment tag mlflow.sharedViewState.KEY (JSON: name, createdAt and updatedAt in ms, and
# `state`, the view as JSON: its sort and its selectedColumns, named as
# metrics.`trial_score`), and the URL's ?viewStateShareKey=KEY opens it. `arnn ui` keeps
# one view for each experiment: each trial's score, outcome and sampled values.
RUNS_VIEW_KEY = "arnn"
RUNS_VIEW_TAG = "mlflow.sharedViewState." + RUNS_VIEW_KEY
RUNS_VIEW_NAME = "arnn trials"


def experiment_id(client: MlflowClient, name: str) -> str:
    """The id of experiment `name`, created when missing (safe when many trials race) and
    marked as a model-training experiment."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name, tags=EXPERIMENT_KIND)
    except MlflowException:
        return client.get_experiment_by_name(name).experiment_id


def browse_hint(tracking_uri: str, experiment: str, run_id: str | None = None) -> str:
    """How to see a run in the MLflow UI: its URL, after `arnn ui` for a store in files."""
    url = ui_url(tracking_uri, experiment, run_id)
    if tracking_uri.startswith(("http://", "https://")):
        return url
    return f"arnn ui --tracking-uri {tracking_uri}, then {url}"


def ui_url(
    tracking_uri: str, experiment: str, run_id: str | None = None, base: str | None = None
) -> str:
    """The MLflow UI page of `experiment`'s runs table in model-training mode (in arnn's
    view where the experiment has one: see save_runs_view), or of one run: on `base`, else
    the tracking server itself, else `arnn ui`'s default address."""
    if base is None:
        remote = tracking_uri.startswith(("http://", "https://"))
        base = tracking_uri.rstrip("/") if remote else UI_DEFAULT
    found = connect(tracking_uri).get_experiment_by_name(experiment)
    page = f"#/experiments/{found.experiment_id if found else 0}"
    if run_id is not None:
        return f"{base}/{page}/runs/{run_id}?workflowType=machine_learning"
    if found is not None and RUNS_VIEW_TAG in found.tags:
        return f"{base}/{page}/runs?viewStateShareKey={RUNS_VIEW_KEY}&workflowType=machine_learning"
    return f"{base}/{page}/runs?{RUNS_BY_NAME}&workflowType=machine_learning"


def save_runs_view(tracking_uri: str, experiment: str) -> None:
    """Write `experiment`'s view of the runs table (RUNS_VIEW_TAG), unless it has these
    columns already: the score, the outcome, and every parameter that its sweeps sample.
    Nothing when the experiment does not exist."""
    client = connect(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return
    columns = runs_view_columns(sampled_names(client, found.experiment_id))
    if view_columns(found.tags.get(RUNS_VIEW_TAG)) != columns:
        client.set_experiment_tag(found.experiment_id, RUNS_VIEW_TAG, runs_view(columns))


def runs_view_columns(sampled: list[str]) -> list[str]:
    """The runs table's columns for the trials of sweeps that sample `sampled`."""
    return [
        f"metrics.`{record.TRIAL_SCORE}`",
        f"tags.`{record.STATUS}`",
        *(f"params.`{record.SAMPLED_PARAM_PREFIX}{name}`" for name in sampled),
    ]


def runs_view(columns: list[str]) -> str:
    """The value of RUNS_VIEW_TAG for a view of `columns`, sorted by run name."""
    state = {"orderByKey": BY_RUN_NAME, "orderByAsc": True, "selectedColumns": columns}
    now = int(time.time() * 1000)
    return json.dumps(
        {"name": RUNS_VIEW_NAME, "createdAt": now, "updatedAt": now, "state": json.dumps(state)}
    )


def view_columns(tag_value: str | None) -> list[str] | None:
    """The columns of a saved view, from its tag's value; None when there is none (or it
    is not plain JSON: the UI may compress what it saves)."""
    try:
        return json.loads(json.loads(tag_value)["state"])["selectedColumns"]
    except (TypeError, ValueError, KeyError):
        return None


def sampled_names(client: MlflowClient, experiment_id: str) -> list[str]:
    """The parameters that the experiment's sweeps sample (each sweep's param `searched`),
    the first sweep's first."""
    sweeps = client.search_runs(
        [experiment_id],
        record.equals(record.KIND, record.SWEEP_RUN),
        order_by=["attributes.start_time ASC"],
    )
    searched = (run.data.params.get("searched", "") for run in sweeps)
    names = (name for line in searched for name in line.split(",") if name not in ("", "-"))
    return list(dict.fromkeys(names))


def run_tags(config: TrainConfig, device: str, kernel: str) -> dict[str, str]:
    """What a training run is, beside its params: `kernel` is the path the recurrence takes
    (eager or fused, as arnn.kernels.resolve_kernel decided)."""
    return {
        record.TASK: config.task.name,
        record.TASK_OPTIONS: json.dumps(config.task.options, sort_keys=True),
        record.MODEL: config.model.name,
        record.UNITS: str(config.model.hidden),
        record.DEVICE: device,
        record.KERNEL: kernel,
        record.SEED: str(config.seed),
    }


def absolute_tracking_uri(uri: str) -> str:
    """sqlite:///relative.db made absolute, so that processes in other folders (Ray trials
    run in their own) write to the same file."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        return prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


def runs_frame(tracking_uri: str, experiment: str, filter_string: str = ""):
    """The experiment's runs (those matching `filter_string`) in the columns that
    mlflow.search_runs gives (run_id, status, start_time, ..., params.*, metrics.*, tags.*),
    read with a client of `tracking_uri`: mlflow.search_runs would set the process's
    tracking URI, and $MLFLOW_TRACKING_URI with it, for every later command it starts.
    Empty (no columns) when there are none."""
    import pandas as pd

    client = connect(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return pd.DataFrame()
    rows, token = [], None
    while True:
        page = client.search_runs(
            [found.experiment_id], filter_string, max_results=10_000, page_token=token
        )
        rows += [_frame_row(run) for run in page]
        token = page.token
        if not token:
            return pd.DataFrame(rows)


def _frame_row(run) -> dict:
    import pandas as pd

    info = run.info
    return {
        "run_id": info.run_id,
        "experiment_id": info.experiment_id,
        "status": info.status,
        "artifact_uri": info.artifact_uri,
        "start_time": pd.to_datetime(info.start_time, unit="ms", utc=True),
        "end_time": pd.to_datetime(info.end_time, unit="ms", utc=True),
        **{f"metrics.{k}": v for k, v in run.data.metrics.items()},
        **{f"params.{k}": v for k, v in run.data.params.items()},
        **{f"tags.{k}": v for k, v in run.data.tags.items()},
    }


def load_trained(tracking_uri: str, run_id: str) -> tuple[TrainConfig, dict]:
    """The configuration and best-validation weights that `log_result` stored with a run."""
    client = connect(tracking_uri)
    try:
        with tempfile.TemporaryDirectory() as folder:
            path = client.download_artifacts(run_id, "model/weights.pt", folder)
            saved = torch.load(path, map_location="cpu", weights_only=False)
    except (MlflowException, OSError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(f"run {run_id}: no trained weights (model/weights.pt): {first}") from None
    return TrainConfig.model_validate(saved["config"]), saved["state_dict"]
