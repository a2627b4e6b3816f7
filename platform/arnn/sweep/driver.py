"""`arnn sweep SPEC`: validate, open the sweep's MLflow run, run it on Ray, summarise.

Every check happens before Ray starts and before anything is written to MLflow. The
summary is read back from MLflow, so that a fresh sweep, a resumed one and an interrupted
one are counted and ranked the same way (arnn.scoring).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from arnn import record, scoring
from arnn.data import DATA_DIR_ENV, resolve_data_dir
from arnn.errors import UsageError
from arnn.interrupt import Interrupted, StopSignals
from arnn.provenance import provenance_tags
from arnn.results import number_or_none, tag_column, trial_records
from arnn.sweep import names
from arnn.sweep.ray_runtime import check_address, connect, disconnect
from arnn.sweep.report import write_report
from arnn.sweep.request import SweepRequest, make_request, shown
from arnn.sweep.space import num_trials
from arnn.sweep.spec import Spec, load_spec
from arnn.sweep.study import number_of, resolve_study_storage, write_study
from arnn.sweep.tune import SweepSettings, can_resume, run_sweep, trial_label, tune_state_exists
from arnn.tables import console
from arnn.tasks import create_task
from arnn.tracking import (
    TrackedRun,
    absolute_tracking_uri,
    browse_hint,
    is_local_store,
    resolve_tracking_uri,
    runs_frame,
)

DEFAULT_STORAGE = "ray_results"


@dataclasses.dataclass
class SweepOutcome:
    parent_run_id: str
    trials: list[scoring.TrialRecord]  # ranked: finished best first
    counts: dict[str, int]  # by outcome, "never started" included
    best: scoring.TrialRecord | None

    @property
    def every_trial_failed(self) -> bool:
        return scoring.every_trial_failed(self.counts)


def sweep(spec: Spec | str | Path, **options: Any) -> SweepOutcome:
    """Run (or resume) a sweep of `spec` (a Spec, or its YAML file); `options` are the
    other fields of arnn.sweep.request.SweepRequest. See `run`."""
    return run(make_request({}, spec=spec, **options))


def run(request: SweepRequest) -> SweepOutcome:
    """Run (or resume) the sweep `request` asks for: every check first, then the sweep on
    Ray, then its records. Raises Interrupted after SIGINT or SIGTERM, with every run
    closed and the line that resumes it printed (`SweepRequest.resume_line`)."""
    plan = _plan(request)
    connect(request.address)
    try:
        return _execute(plan)
    finally:
        disconnect()


@dataclasses.dataclass(frozen=True)
class _Plan:
    """A checked request: the spec read, the names and places resolved."""

    request: SweepRequest
    settings: SweepSettings
    total: int
    previous: TrackedRun | None  # the sweep's run, when it resumes


def _plan(request: SweepRequest) -> _Plan:
    """Every check that can refuse the request, before Ray starts or a run opens."""
    spec = request.spec if isinstance(request.spec, Spec) else load_spec(request.spec)
    check_address(request.address)
    uri = absolute_tracking_uri(resolve_tracking_uri(request.tracking_uri))
    check_tracking_reachable(request.address, uri)
    request = request.model_copy(
        update={
            "name": request.name or f"{spec.name}-{datetime.datetime.now():%Y%m%d-%H%M%S}",
            "data_dir": _data_dir(request),
        }
    )
    settings = SweepSettings(
        name=request.name,
        spec=spec,
        tracking_uri=uri,
        experiment=request.experiment,
        storage_path=_storage(request.storage_path),
        address=request.address,
        samples=request.samples,
        max_concurrent=request.max_concurrent,
        data_dir=request.data_dir,
        resume=request.resume,
        tags=tuple(sorted(request.tags.items())),
        score_test=request.score_test,
        trial_kind=request.trial_kind,
        study_storage=resolve_study_storage(request.study_storage, uri, request.address),
        provenance=tuple(sorted(provenance_tags().items())),
    )
    _check_name(settings)
    if request.address == "local":
        _check_data(spec, request.data_dir)
    total = num_trials(spec, request.samples)
    previous = _previous_parent(settings) if request.resume else None
    if previous is not None:
        _check_unchanged(previous, spec, total)
    return _Plan(request, settings, total, previous)


def _data_dir(request: SweepRequest) -> str | None:
    """The trials' data root, absolute: they run in folders of their own, so a relative
    --data-dir or $ARNN_DATA_DIR means the folder this command runs in."""
    data_dir = request.data_dir
    if data_dir is None and request.address == "local":
        data_dir = os.environ.get(DATA_DIR_ENV) or None
    return None if data_dir is None else str(Path(data_dir).expanduser().resolve())


def _check_name(settings: SweepSettings) -> None:
    exists = can_resume(settings)
    if settings.resume and not exists:
        raise UsageError(f"--resume: no sweep {settings.name!r} under {settings.storage_path}")
    if not settings.resume and exists:
        raise UsageError(
            f"--name: sweep {settings.name!r} exists under {settings.storage_path}; "
            "add --resume to finish it, or choose another name"
        )


def _execute(plan: _Plan) -> SweepOutcome:
    """The sweep's run opened (or reopened), the trials on Ray, then what they left."""
    with StopSignals():  # until Tune runs, a signal stops at once
        parent = _open_parent(plan.settings, plan.total, plan.previous)
        settings = dataclasses.replace(plan.settings, parent_run_id=parent.run_id)
        _announce(parent, settings, plan.total)
        resume_line = plan.request.resume_line()
        try:
            tuned = run_sweep(settings, plan.total)
        except KeyboardInterrupt as error:
            signum = error.signum if isinstance(error, Interrupted) else 2
            _end_interrupted(parent, settings, plan.total, signum, resume_line)
        except BaseException:
            _close_leftovers(parent, settings, status="FAILED", label=scoring.FAILED)
            parent.close("FAILED", scoring.FAILED)
            raise
        _delete_lost_trials(parent, settings, tuned.trial_ids)
        if tuned.interrupted_by is not None:
            _end_interrupted(parent, settings, plan.total, tuned.interrupted_by, resume_line)
        return _finish(parent, settings, plan.total, tuned.errors)


def _announce(parent: TrackedRun, settings: SweepSettings, total: int) -> None:
    spec = settings.spec
    print(
        f"sweep {settings.name}: {names.counted(total, _noun(settings.trial_kind))} of "
        f"{spec.task} / {spec.model}, at most "
        f"{settings.max_concurrent or spec.max_concurrent} at once; MLflow run "
        f"{parent.run_id} in {settings.tracking_uri}\n"
        f"browse it: {browse_hint(settings.tracking_uri, settings.experiment, parent.run_id)}",
        flush=True,
    )


def _finish(
    parent: TrackedRun, settings: SweepSettings, total: int, errors: list[str]
) -> SweepOutcome:
    """The trials Tune left open closed, the summary, the report and study, the sweep's
    run closed with how it went."""
    _close_leftovers(parent, settings, status="KILLED", label=scoring.PRUNED)
    outcome = _summarise(parent, settings, total)
    _keep_records(parent, settings)
    if outcome.every_trial_failed:
        first = errors[0] if errors else "no error recorded"
        print(f"every trial failed; the first: {first}", file=sys.stderr)
        parent.close("FAILED", scoring.FAILED)
    else:
        parent.close("FINISHED", scoring.FINISHED)
    return outcome


def sweep_state_exists(name: str, storage_path: str | None) -> bool:
    """Whether Ray holds the state of sweep `name` (what --resume needs)."""
    return tune_state_exists(_storage(storage_path), name)


def check_tracking_reachable(address: str, tracking_uri: str) -> None:
    """On a cluster every worker logs its trials: a store in this machine's files would be
    a different file on each worker, which the driver never sees."""
    if address != "local" and is_local_store(tracking_uri):
        raise UsageError(
            f"--tracking-uri: {tracking_uri} is a file on this machine, which the cluster's "
            f"workers (--address {address}) cannot reach; point --tracking-uri at the MLflow "
            "server on the head, e.g. http://HEAD:5000"
        )


def _check_data(spec, data_dir: str | None) -> None:
    """On this machine the trials read the data from here: missing data ends the sweep
    before Ray starts (and is downloaded here once, where the network allows)."""
    config = spec.base_config()
    create_task(config.task.name, config.task.options).load(
        resolve_data_dir(data_dir or config.runtime.data_dir), download=config.runtime.download
    )


def _storage(flag: str | None) -> str:
    chosen = flag or os.environ.get("ARNN_STORAGE_PATH") or DEFAULT_STORAGE
    if "://" in chosen:  # s3://, gs://: shared storage for a cluster
        return chosen
    return str(Path(chosen).expanduser().resolve())


def spec_record(spec: Spec, total: int) -> dict:
    """The spec as its sweep's run keeps it (the tag arnn.spec, which the report reads):
    every key, defaults filled in, and its number of trials."""
    return {**spec.model_dump(mode="json"), "num_samples": total}


def _searched(record: dict) -> dict:
    """What a sweep searches, of a spec record: all of it but `map` (it changes only the
    report), and points_to_evaluate while empty (a key younger than sweeps already
    recorded, which must still resume)."""
    content = {key: value for key, value in record.items() if key != "map"}
    if not content.get("points_to_evaluate"):
        content.pop("points_to_evaluate", None)
    return content


def spec_hash(spec: Spec, total: int) -> str:
    content = json.dumps(_searched(spec_record(spec, total)), sort_keys=True)
    return hashlib.sha256(content.encode()).hexdigest()[:16]


def _parent_tags(settings: SweepSettings) -> dict[str, str]:
    return {record.SWEEP: settings.name, record.KIND: record.SWEEP_RUN}


def _previous_parent(settings: SweepSettings) -> TrackedRun | None:
    """The run of the sweep being resumed: its name's, kept where its Ray state is (a
    sweep of the same name kept elsewhere is another sweep)."""
    return TrackedRun.find(
        tracking_uri=settings.tracking_uri,
        experiment=settings.experiment,
        tags=_parent_tags(settings),
        params={"storage_path": settings.storage_path},
    )


def _check_unchanged(parent: TrackedRun, spec: Spec, total: int) -> None:
    """A resumed sweep searches what it started with: a changed spec is refused, naming
    the keys that differ."""
    tags = parent.client.get_run(parent.run_id).data.tags
    if tags.get(record.SPEC_HASH) == spec_hash(spec, total):
        return
    before = _flatten(_searched(json.loads(tags.get(record.SPEC, "{}"))))
    now = _flatten(_searched(spec_record(spec, total)))
    changed = [
        f"{key} {before.get(key)!r} -> {now.get(key)!r}"
        for key in sorted(set(before) | set(now))
        if before.get(key) != now.get(key)
    ]
    raise UsageError(
        f"--resume: the spec changed since sweep {tags.get(record.SWEEP)!r} started: "
        + ("; ".join(changed) or "its hash differs")
        + "; resume it with the spec it started with, or start a new sweep"
    )


def _flatten(values: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _open_parent(settings: SweepSettings, total: int, previous: TrackedRun | None) -> TrackedRun:
    if previous is not None:
        previous.reopen()
        previous.set_tags({record.STATUS: "running"})
        return previous
    spec = settings.spec
    run = TrackedRun.start(
        tracking_uri=settings.tracking_uri,
        experiment=settings.experiment,
        run_name=names.sweep_name(settings.name, spec.name),
        params={
            "spec": spec.name,
            "task": spec.task,
            "model": spec.model,
            "num_samples": str(total),
            "max_concurrent": str(settings.max_concurrent or spec.max_concurrent),
            "sampler": spec.sampler.type,
            "sampler_seed": str(spec.sampler.seed),
            "scheduler": spec.scheduler.type,
            "metric": spec.metric,
            "mode": spec.mode,
            "address": settings.address,
            "storage_path": settings.storage_path,
            "searched": ",".join(spec.params) or "-",
        },
        tags={
            **_parent_tags(settings),
            record.SPEC_HASH: spec_hash(spec, total),
            record.SPEC: json.dumps(spec_record(spec, total), sort_keys=True),
            record.TASK: spec.task,
            record.TASK_OPTIONS: json.dumps(spec.base_config().task.options, sort_keys=True),
            record.MODEL: spec.model,
            record.STATUS: "running",
            **dict(settings.tags),
        },
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "spec.yaml"
        path.write_text(
            yaml.safe_dump(spec.model_dump(mode="json", exclude_defaults=True), sort_keys=False)
        )
        run.client.log_artifact(run.run_id, str(path), artifact_path="spec")
    return run


def _children(parent: TrackedRun, settings: SweepSettings):
    return runs_frame(
        settings.tracking_uri,
        settings.experiment,
        f"tags.`mlflow.parentRunId` = '{parent.run_id}'",
    )


def _delete_lost_trials(parent: TrackedRun, settings: SweepSettings, known: frozenset[str]):
    """A killed driver loses what Tune had not yet saved of its state: a trial it had
    started (and whose run had logged) can be unknown to the resumed sweep, whose restored
    searcher runs that slot again, as a new trial with the same number. Such a run (not
    Tune's, its number taken by a run that is) is tagged arnn.status=lost, closed if it
    was still running, and deleted (MLflow keeps it, restorable, out of the runs table and
    of every count), so that a sweep holds exactly one run per trial, as its study does.
    A run not Tune's whose number no other run has is left as it is, with a warning."""
    frame = _children(parent, settings)
    if frame.empty:
        return
    kinds, ids = tag_column(frame, record.KIND), tag_column(frame, record.TRIAL_ID)
    numbers = tag_column(frame, record.TRIAL_NUMBER)
    trials = (kinds == settings.trial_kind) & ids.notna()
    foreign = trials & ~ids.isin(known)
    taken = set(numbers[trials & ~foreign].dropna()) - {""}
    for row in frame[foreign].itertuples():
        run_id, trial_id, number = row.run_id, ids[row.Index], numbers[row.Index]
        name = _trial_name(frame.loc[row.Index].to_dict(), settings.trial_kind)
        if number not in taken:
            print(
                f"warning: MLflow run {run_id} (trial {name}, Ray id {trial_id}) is nested "
                f"under sweep {settings.name!r} but is none of its trials; left as it is",
                file=sys.stderr,
            )
            continue
        run = TrackedRun(parent.client, run_id)
        if row.status == "RUNNING":
            run.close("KILLED", scoring.LOST)
        else:  # it ended before the driver was killed: its status stays
            run.set_tags({record.STATUS: scoring.LOST})
        parent.client.delete_run(run_id)
        print(
            f"trial {name} (Ray id {trial_id}) was lost with the killed driver's unsaved "
            f"state (the resumed sweep ran its slot again): its MLflow run {run_id} is "
            "deleted, restorable",
            flush=True,
        )


def _close_leftovers(parent: TrackedRun, settings: SweepSettings, status: str, label: str) -> int:
    """Close the trial runs still RUNNING (a killed driver's, or those in flight when the
    sweep was interrupted) with `status` and the tag arnn.status=`label`."""
    frame = _children(parent, settings)
    if frame.empty:
        return 0
    open_runs = frame[frame["status"] == "RUNNING"]["run_id"]
    for run_id in open_runs:
        TrackedRun(parent.client, run_id).close(status, label)
    return len(open_runs)


def _end_interrupted(
    parent: TrackedRun, settings: SweepSettings, total: int, signum: int, resume_command: str
) -> None:
    """Close what an interruption left open, say how to go on, raise Interrupted."""
    in_flight = _close_leftovers(parent, settings, status="KILLED", label=scoring.INTERRUPTED)
    _summarise(parent, settings, total)
    _keep_records(parent, settings)
    parent.close("KILLED", scoring.INTERRUPTED)
    stopped = Interrupted(signum)
    in_flight = names.counted(in_flight, _noun(settings.trial_kind))
    print(
        f"\nsweep {settings.name} interrupted by {stopped.name}: {in_flight} in flight "
        f"closed KILLED (arnn.status=interrupted), the sweep's run KILLED.\n"
        f"resume it with: {resume_command}",
        file=sys.stderr,
        flush=True,
    )
    raise stopped


def _keep_records(parent: TrackedRun, settings: SweepSettings) -> None:
    """What a sweep leaves beside its runs when it ends (and again after a resume): its
    report as artifacts of its run (arnn.sweep.report), its Optuna study (arnn.sweep.study)."""
    try:
        files = write_report(settings.tracking_uri, settings.experiment, parent.run_id)
        print(f"\nreport: {', '.join(files.files)} in {files.location}", flush=True)
    except Exception as error:  # the trials are recorded: a plot must not fail the sweep
        print(
            f"\nreport not written ({type(error).__name__}: {error}); "
            f"`arnn report {settings.name}` writes it again",
            file=sys.stderr,
            flush=True,
        )
    if settings.study_storage is None:
        print("Optuna study not kept: give --study-storage (an SQLAlchemy URL) to keep it")
    else:
        storage = shown(settings.study_storage)
        try:
            written = write_study(
                settings.study_storage,
                settings.name,
                settings.spec,
                _children(parent, settings),
                settings.tracking_uri,
                parent.run_id,
            )
            print(
                f"Optuna study {settings.name!r} ({names.counted(written, 'trial')}) in {storage}: "
                f"optuna-dashboard {storage}"
            )
        except Exception as error:  # the trials are recorded in MLflow: the sweep goes on
            print(
                f"Optuna study not written to {storage} ({type(error).__name__}: {error})",
                file=sys.stderr,
            )
    where = browse_hint(settings.tracking_uri, settings.experiment, parent.run_id)
    print(f"the sweep's run: {where}", flush=True)


def _summarise(parent: TrackedRun, settings: SweepSettings, total: int) -> SweepOutcome:
    """Counts by outcome and the best finished trial (arnn.scoring), on the console and on
    the sweep's run, read back from MLflow; for final runs, their seeds' mean ± std."""
    metric, mode, kind = settings.spec.metric, settings.spec.mode, settings.trial_kind
    frame = _children(parent, settings)
    records = scoring.ranked(_named(trial_records(frame), frame, kind), mode)
    counts = scoring.outcome_counts(records, total)
    best = scoring.best_trial(records, mode)
    parent.log_metrics({f"trials_{k.replace(' ', '_')}": v for k, v in counts.items()})
    print(
        f"\n{names.counted(total, _noun(kind))}: "
        + ", ".join(f"{v} {k}" for k, v in counts.items())
    )
    _print_trials(records[:10], metric, kind)
    if best is not None:
        parent.log_metrics({f"sweep_best_{metric}": best.score})
        parent.set_tags(  # its name (t07), as a person reads it; Ray's id, for tools
            {
                record.BEST_TRIAL: best.name,
                record.BEST_TRIAL_ID: best.trial,
                record.BEST_RUN_ID: best.run_id,
            }
        )
    if kind == record.FINAL_RUN:
        _print_seeds(records, frame, metric)
    elif best is not None:
        print(
            f"\nbest trial {best.name} (best of the finished): {metric} {best.score:.4f}, "
            f"MLflow run {best.run_id}"
        )
    return SweepOutcome(parent.run_id, records, counts, best)


def _noun(kind: str) -> str:
    return "final run" if kind == record.FINAL_RUN else "trial"


def _trial_name(row: dict, kind: str) -> str:
    """The name (arnn.sweep.tune.trial_label) of the trial of one row of a runs frame."""
    return trial_label(
        kind, number_of(row), json.loads(row.get(record.column(record.SAMPLED)) or "{}")
    )


def _named(records: list[scoring.TrialRecord], frame, kind: str) -> list[scoring.TrialRecord]:
    """The records of the runs in `frame`, each with its trial's name."""
    rows = {row["run_id"]: row for row in frame.to_dict("records")} if not frame.empty else {}
    return [dataclasses.replace(r, name=_trial_name(rows[r.run_id], kind)) for r in records]


def _print_seeds(records: list[scoring.TrialRecord], frame, metric: str) -> None:
    """Final runs are replicas, not rivals: the mean ± std over the seeds that finished,
    of the metric selected on (each seed's best epoch) and of the test split's twin of it
    (of the best epoch's weights), where every seed logged it."""
    finished = [r for r in records if r.outcome == scoring.FINISHED and r.score is not None]
    if not finished:
        print(f"\nno seed finished, of {names.counted(len(records), 'final run')}")
        return
    test = f"test_{metric.removeprefix('val_')}"
    scores = {f"best {metric}": [r.score for r in finished], test: _logged(frame, test, finished)}
    shown = ", ".join(f"{name} {_mean_std(values)}" for name, values in scores.items() if values)
    spread = " (mean ± std over the seeds)" if len(finished) > 1 else ""
    print(f"\n{names.counted(len(finished), 'seed')} finished: {shown}{spread}")


def _logged(frame, metric: str, records: list[scoring.TrialRecord]) -> list[float]:
    """Metric `metric` of each record's run, as the frame holds it; empty unless every one
    of them logged it."""
    column = f"metrics.{metric}"
    by_run = dict(zip(frame["run_id"], frame[column], strict=True)) if column in frame else {}
    values = [number_or_none(by_run.get(r.run_id)) for r in records]
    return [] if None in values else values


def _mean_std(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.4f}" if len(values) == 1 else f"{mean:.4f} ± {statistics.stdev(values):.4f}"


def _print_trials(records: list[scoring.TrialRecord], metric: str, kind: str) -> None:
    if not records:
        return
    named = {"seed"} if kind == record.FINAL_RUN else set()  # a final run's name says its seed
    sampled = sorted({k for record in records for k in record.sampled} - named)
    table = pd.DataFrame(
        [
            [
                record.name,
                record.outcome,
                "" if record.epochs is None else str(record.epochs),
                "" if record.score is None else f"{record.score:.4f}",
                *[names.short(record.sampled.get(k, ""), digits=4) for k in sampled],
                record.run_id or "",
            ]
            for record in records
        ],
        columns=[_noun(kind), "outcome", "epochs", f"best {metric}", *sampled, "MLflow run"],
    )
    print(console(table))
