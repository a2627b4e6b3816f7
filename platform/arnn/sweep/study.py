"""The sweep's Optuna study, kept in a database under the sweep's name, so that
`optuna.load_study` and `optuna-dashboard` work on it.

It is written from MLflow, the record of the sweep (one run per trial, a resumed trial
keeping its run): when a sweep ends, interrupted or not, its study is written again whole,
so that it holds exactly one trial per finished trial run, in the order the searcher asked
for them, with the state MLflow says (COMPLETE with the trial's score, PRUNED, FAIL) and
the metric's value at each epoch. Trials still in flight (an interrupted sweep's) are not
in it until a resume finishes them. The sweep's report ranks its importances on the same
study, built in memory from MLflow (`sweep_study`).
"""

from __future__ import annotations

import datetime
import json
import math
import os
from pathlib import Path

import optuna
import pandas as pd
import sqlalchemy

from arnn import record
from arnn.errors import UsageError
from arnn.results import number_or_none
from arnn.sweep.request import shown
from arnn.sweep.space import distributions, trial_state
from arnn.sweep.spec import Spec
from arnn.tracking import connect, is_local_store

STUDY_STORAGE_ENV = "ARNN_STUDY_STORAGE"


def resolve_study_storage(flag: str | None, tracking_uri: str, address: str) -> str | None:
    """--study-storage, else $ARNN_STUDY_STORAGE, else an SQLite file beside a tracking
    store in files (None beside a tracking server: there is no folder to put it in). A
    file on this machine is refused for a cluster, as the tracking store is."""
    chosen = flag or os.environ.get(STUDY_STORAGE_ENV) or _beside(tracking_uri)
    if chosen is not None:
        try:
            sqlalchemy.engine.make_url(chosen)
        except sqlalchemy.exc.ArgumentError:
            raise UsageError(
                f"--study-storage: {chosen!r} is not an SQLAlchemy database URL "
                "(e.g. sqlite:///optuna.db, postgresql://HEAD/optuna)"
            ) from None
    if chosen is not None and address != "local" and is_local_store(chosen):
        raise UsageError(
            f"--study-storage: {chosen} is a file on this machine; for a cluster "
            f"(--address {address}) keep the study in the head's database, e.g. "
            "postgresql://HEAD/optuna"
        )
    return chosen


def _beside(tracking_uri: str) -> str | None:
    if tracking_uri.startswith("sqlite:///"):
        folder = Path(tracking_uri.removeprefix("sqlite:///")).parent
    elif tracking_uri.startswith("file:"):
        folder = Path(tracking_uri.removeprefix("file://").removeprefix("file:"))
    elif "://" not in tracking_uri:
        folder = Path(tracking_uri)
    else:
        return None
    return f"sqlite:///{folder.resolve() / 'optuna.db'}"


def write_study(storage: str, name: str, spec: Spec, trials, tracking_uri: str, parent: str) -> int:
    """Write the study of sweep `name` (MLflow run `parent`) into `storage` from its trial
    runs (`trials`: the runs_frame rows of the sweep's trials); the number of trials
    written. A study of that name that another sweep wrote is not replaced: UsageError."""
    _delete_own_study(storage, name, parent)
    study = sweep_study(spec, trials, tracking_uri, parent, storage=storage, name=name)
    return len(study.get_trials(deepcopy=False))


def sweep_study(
    spec: Spec,
    trials,
    tracking_uri: str,
    parent: str,
    storage: str | None = None,
    name: str | None = None,
) -> optuna.Study:
    """The study of the sweep whose MLflow run is `parent`, from its trial runs (`trials`:
    the runs_frame rows of the sweep's trials): into `storage` under `name`, or with
    `storage` None in memory (the report's importances are ranked on it). A run whose
    sampled values lie outside the spec's ranges: ValueError."""
    client, every = connect(tracking_uri), distributions(spec)
    frozen = [
        trial
        for row in sorted(trials.to_dict("records"), key=_order)
        if (trial := _frozen(row, spec.metric, every, client)) is not None
    ]
    study = optuna.create_study(study_name=name, storage=storage, direction=f"{spec.mode}imize")
    study.set_user_attr("metric", spec.metric)
    study.set_user_attr("mlflow_parent_run_id", parent)
    study.add_trials(frozen)
    return study


def _delete_own_study(storage: str, name: str, parent: str) -> None:
    """Delete the study `name` in `storage` that sweep `parent` wrote before, if any; one
    that another sweep wrote: UsageError."""
    try:
        kept = optuna.load_study(study_name=name, storage=storage)
    except KeyError:  # not written before
        return
    owner = kept.user_attrs.get("mlflow_parent_run_id")
    if owner != parent:
        raise UsageError(
            f"a study named {name!r} in {shown(storage)} belongs to another sweep "
            f"(MLflow run {owner}); name this sweep otherwise, or use another --study-storage"
        )
    optuna.delete_study(study_name=name, storage=storage)


def _order(row: dict) -> tuple:
    number = number_of(row)
    return (number is None, number or 0, row.get("start_time"))


def number_of(row: dict) -> int | None:
    """The trial's number in its sweep (arnn.trial_number), where it has one."""
    number = str(row.get(record.column(record.TRIAL_NUMBER)) or "")
    return int(number) if number.isdigit() else None


def _frozen(row: dict, metric: str, every: dict, client) -> optuna.trial.FrozenTrial | None:
    """The trial of one run (`every`: the spec's distributions), None where it has not
    ended."""
    outcome = str(row.get(record.column(record.STATUS)) or "")
    score = number_or_none(row.get("metrics.trial_score"))
    state = trial_state(outcome, score)
    if state is None:
        return None  # in flight or interrupted: not ended, so not in the study yet
    sampled = json.loads(row.get(record.column(record.SAMPLED)) or "{}")
    params = {k: v for k, v in sampled.items() if k in every}
    history = client.get_metric_history(row["run_id"], metric)
    trial = optuna.trial.create_trial(
        state=state,
        value=score if state == optuna.trial.TrialState.COMPLETE else None,
        params=params,
        distributions={k: every[k] for k in params},
        intermediate_values={int(m.step): m.value for m in history if math.isfinite(m.value)},
        user_attrs={
            "arnn_outcome": outcome,
            "arnn_trial_number": number_of(row),
            "mlflow_run_id": row["run_id"],
            "mlflow_run_name": row.get("tags.mlflow.runName") or "",
        },
    )
    # when it ran, as its MLflow run says (not when the study was written)
    trial.datetime_start = _moment(row.get("start_time"))
    trial.datetime_complete = _moment(row.get("end_time")) or trial.datetime_start
    return trial


def _moment(value) -> datetime.datetime | None:
    """A runs_frame time (a UTC pandas Timestamp, NaT where unset) as a naive local
    datetime, the way Optuna records its own."""
    if value is None or pd.isna(value):
        return None
    return (
        value.tz_convert(None)
        .to_pydatetime()
        .replace(tzinfo=datetime.UTC)
        .astimezone()
        .replace(tzinfo=None)
    )
