"""A sweep as its report reads it back from MLflow alone (no Ray): its spec, its trials in
the order the searcher asked for them with their curves, and its Optuna study, built in
memory the way the sweep keeps it (arnn.sweep.study). Scores and outcomes are
arnn.scoring's, read the way the sweep's summary reads them (arnn.results.trial_records),
so that the report and the console agree."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pydantic
import yaml
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from arnn import record, scoring
from arnn.errors import UsageError
from arnn.results import number_or_none, trial_records
from arnn.sweep import names
from arnn.sweep.spec import Spec, parse_spec
from arnn.sweep.study import number_of, sweep_study
from arnn.tracking import runs_frame

SPEC_ARTIFACT = "spec/spec.yaml"
RUNNING = "running"  # a trial whose MLflow run is still open: no outcome yet
OUTCOMES = (*scoring.OUTCOMES, RUNNING)  # every outcome a report's trial can have, in order


@dataclass
class Trial:
    record: scoring.TrialRecord
    number: int | None  # the searcher's (arnn.trial_number): t07 is number 6
    name: str  # its MLflow run's name
    outcome: str  # arnn.scoring's outcome, or RUNNING
    seconds: float | None  # of training: the whole run's, else its epochs' so far
    history: list[tuple[int, float]]  # (epoch, value of the spec's metric), by epoch

    @property
    def last_epoch(self) -> int:
        return self.history[-1][0] if self.history else 0


@dataclass
class Sweep:
    name: str
    run_id: str
    spec: Spec
    trials: list[Trial]  # in the order the searcher asked for them
    best: scoring.TrialRecord | None
    study: optuna.Study | None  # as arnn.sweep.study keeps it; None where it cannot be built
    study_problem: str | None = None  # why there is no study
    notes: list[str] = field(default_factory=list)  # plain-language caveats, for the console

    @property
    def metric(self) -> str:
        return self.spec.metric

    def counts(self) -> str:
        found = [t.outcome for t in self.trials]
        kinds = [k for k in OUTCOMES if k in found]
        return f"{names.counted(len(found), 'trial')}: " + ", ".join(
            f"{found.count(k)} {k}" for k in kinds
        )


def read_sweep(client: MlflowClient, uri: str, experiment: str, sweep: str) -> Sweep:
    """Sweep `sweep` (its name, the tag arnn.sweep, or its run id) of `experiment`."""
    parent = find_parent(client, uri, experiment, sweep)
    spec = read_spec(client, parent)
    run_id = parent.info.run_id
    frame = runs_frame(uri, experiment, f"tags.`mlflow.parentRunId` = '{run_id}'")
    # Every run nested under the sweep's is one of its trials (arnn.kind trial, or final).
    rows = {row["run_id"]: row for row in frame.to_dict("records")} if not frame.empty else {}
    records = trial_records(frame)
    trials = [_trial(client, rows[record.run_id], record, spec.metric) for record in records]
    trials.sort(key=lambda t: (t.number is None, t.number or 0, t.record.trial))
    name = parent.data.tags.get(record.SWEEP, run_id)
    try:
        with _quiet_optuna():
            study, problem = sweep_study(spec, frame, uri, run_id), None
    except ValueError as error:  # a run's values outside the spec's ranges
        study, problem = None, f"the sweep's study could not be built from its runs ({error})"
    state = Sweep(
        name, run_id, spec, trials, scoring.best_trial(records, spec.mode), study, problem
    )
    if not trials:
        state.notes.append(f"sweep {name}: no trial has an MLflow run yet")
    return state


def _trial(client: MlflowClient, row: dict, record: scoring.TrialRecord, metric: str) -> Trial:
    outcome = RUNNING if row.get("status") == "RUNNING" else record.outcome
    seconds = number_or_none(row.get("metrics.train_seconds"))
    if seconds is None:  # pruned, failed, in flight: the epochs it trained
        epochs = client.get_metric_history(record.run_id, "epoch_seconds")
        seconds = sum(m.value for m in epochs) if epochs else None
    history = sorted((m.step, m.value) for m in client.get_metric_history(record.run_id, metric))
    name = str(row.get("tags.mlflow.runName") or "")
    return Trial(record, number_of(row), name, outcome, seconds, history)


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """create_study announces itself at INFO: not on a report's console."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)


def find_parent(client: MlflowClient, uri: str, experiment: str, sweep: str):
    """The sweep's run, by the tag arnn.sweep or by run id (the newest where several). An
    unknown sweep is one UsageError line naming the sweeps there are."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = sorted(e.name for e in client.search_experiments(max_results=1000))
        raise UsageError(
            f"sweep {sweep!r}: no experiment {experiment!r} in {uri} "
            f"(experiments there: {', '.join(names) or 'none'})"
        )
    for query in (f"attributes.run_id = '{sweep}'", record.equals(record.SWEEP, sweep)):
        found_runs = client.search_runs(
            [found.experiment_id],
            filter_string=f"{record.equals(record.KIND, record.SWEEP_RUN)} and {query}",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if found_runs:
            return found_runs[0]
    parents = client.search_runs(
        [found.experiment_id],
        filter_string=record.equals(record.KIND, record.SWEEP_RUN),
        order_by=["attributes.start_time DESC"],
        max_results=21,
    )
    names = list(dict.fromkeys(r.data.tags.get(record.SWEEP, r.info.run_id) for r in parents))
    listed = ", ".join(names[:20]) + (" and more" if len(names) > 20 else "")
    raise UsageError(
        f"sweep {sweep!r}: no sweep of that name or run id in experiment {experiment!r} of "
        f"{uri} (sweeps there, newest first: {listed or 'none'})"
    )


def read_spec(client: MlflowClient, run) -> Spec:
    """The spec the sweep ran: its tag arnn.spec, else its artifact spec/spec.yaml."""
    tags = run.data.tags
    source = f"sweep {tags.get(record.SWEEP, run.info.run_id)}'s spec"
    if record.SPEC in tags:
        raw = json.loads(tags[record.SPEC])
    else:
        try:
            with tempfile.TemporaryDirectory() as folder:
                path = client.download_artifacts(run.info.run_id, SPEC_ARTIFACT, folder)
                raw = yaml.safe_load(Path(path).read_text())
        except (MlflowException, OSError) as error:
            raise UsageError(
                f"{source}: the run has neither the tag {record.SPEC} nor the artifact "
                f"{SPEC_ARTIFACT} ({str(error).strip().splitlines()[0]})"
            ) from None
    try:
        return parse_spec(raw, source=source)
    except UsageError:
        # A spec that today's tasks or models no longer accept still says what was searched.
        try:
            return Spec.model_validate(raw)
        except pydantic.ValidationError as error:
            raise UsageError(f"{source}: not a spec this version can read: {error}") from None
