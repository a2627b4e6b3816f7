"""Ray Tune: the one module that talks to Ray. A sweep is a Tuner over `run_trial`, with
Optuna choosing the parameters, ASHA stopping the hopeless, and every trial one MLflow run
nested under the sweep's run.

MLflow bookkeeping, and why it sits where it does:
- a trial finds its run by the tag `arnn.trial_id` before creating one, so a trial that
  Ray retries or a sweep that is resumed keeps exactly one run per trial;
- a trial that ends by itself closes its own run (FINISHED, tag arnn.status finished or
  diverged); a trial that ASHA stops never runs another line, so the driver's callback
  closes its run as KILLED with arnn.status=pruned, and an errored one as FAILED;
- at the end the driver closes whatever a killed driver left open.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import ray
from optuna.trial import TrialState
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search.optuna import OptunaSearch

from arnn.errors import UsageError
from arnn.sweep.space import DefineByRun, make_sampler
from arnn.sweep.spec import Asha, Spec
from arnn.tracking import TrackedRun, config_params, run_tags
from arnn.train import EpochMetrics, checkpoint_epoch, train

SWEEP_TAG, TRIAL_TAG, KIND_TAG = "arnn.sweep", "arnn.trial_id", "arnn.kind"
STATE = "arnn_state"  # in every trial result: running, finished or diverged


@dataclass(frozen=True)
class SweepSettings:
    """Where a sweep runs and records; everything a trial needs besides its parameters."""

    name: str
    spec: Spec
    tracking_uri: str
    experiment: str
    storage_path: str
    address: str = "local"
    samples: int | None = None
    max_concurrent: int | None = None
    data_dir: str | None = None
    resume: bool = False
    parent_run_id: str | None = None
    tags: tuple[tuple[str, str], ...] = ()  # set on the sweep's run and on every trial's


@dataclass
class SweepOutcome:
    parent_run_id: str
    trials: list[dict[str, Any]]  # one row per trial, best first
    counts: dict[str, int]

    @property
    def every_trial_failed(self) -> bool:
        return not any(self.counts.get(k) for k in ("finished", "pruned", "diverged"))


# ---------------------------------------------------------------- inside a trial


def run_trial(sampled: dict[str, Any], settings: SweepSettings) -> None:
    """The Tune function trainable: one trial, reporting every epoch with a checkpoint."""
    spec = settings.spec
    placement = {"data_dir": settings.data_dir} if settings.data_dir else {}
    config = spec.trial_config(sampled, **placement)
    _cap_gpu_memory(spec.resources.gpu)
    trial_id = tune.get_context().get_trial_id()
    folder = Path(tempfile.mkdtemp(prefix="arnn-trial-"))
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        checkpoint.to_directory(str(folder))
    run = _trial_run(settings, trial_id, config, sampled)
    run.set_tags(  # of this attempt: where it ran and the epoch it went on from
        {
            "arnn.resumed_from_epoch": checkpoint_epoch(folder),
            "arnn.node_id": ray.get_runtime_context().get_node_id(),
            "arnn.node_ip": ray.util.get_node_ip_address(),
        }
    )

    def report(metrics: EpochMetrics, checkpoint_dir: Path | None) -> None:
        run.log_epoch(metrics)
        result = {**metrics.as_dict(), STATE: "running", "mlflow_run_id": run.run_id}
        tune.report(result, checkpoint=tune.Checkpoint.from_directory(str(checkpoint_dir)))

    started = time.perf_counter()
    try:
        result = train(config, report=report, checkpoint_dir=folder)
    except SystemExit:  # how tune.report ends a trial that the scheduler stopped
        run.close("KILLED", "pruned")
        raise
    except BaseException:
        run.close("FAILED", "failed")
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    run.log_metrics({"train_seconds": time.perf_counter() - started})
    run.log_result(result, config)
    run.finish("FINISHED")
    last = result.history[-1].as_dict() if result.history else {"epoch": 0}
    last.setdefault(spec.metric, -math.inf if spec.mode == "max" else math.inf)
    tune.report(
        {
            **last,
            STATE: result.status,
            "best_val_accuracy": result.best_val_accuracy,
            "test_accuracy": result.test_accuracy,
            "mlflow_run_id": run.run_id,
        }
    )


def _trial_run(settings: SweepSettings, trial_id: str, config, sampled) -> TrackedRun:
    """This trial's MLflow run: the one it had before a retry or resume, else a new one."""
    tags = {TRIAL_TAG: trial_id, "mlflow.parentRunId": settings.parent_run_id}
    run = TrackedRun.find(
        tracking_uri=settings.tracking_uri, experiment=settings.experiment, tags=tags
    )
    if run is not None:
        attempts = int(run.client.get_run(run.run_id).data.tags.get("arnn.attempts", "1"))
        run.set_tags({"arnn.attempts": attempts + 1})
        run.reopen()
        return run
    device = "cuda" if config.device == "auto" and _cuda() else config.device
    return TrackedRun.start(
        tracking_uri=settings.tracking_uri,
        experiment=settings.experiment,
        run_name=f"{settings.name}-{trial_id}",
        params={**config_params(config), **{f"sampled.{k}": str(v) for k, v in sampled.items()}},
        tags={
            **run_tags(config, device),
            TRIAL_TAG: trial_id,
            SWEEP_TAG: settings.name,
            KIND_TAG: "trial",
            "arnn.attempts": "1",
            "arnn.sampled": json.dumps(sampled, sort_keys=True),
            **dict(settings.tags),
        },
        parent_run_id=settings.parent_run_id,
    )


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _cap_gpu_memory(share: float) -> None:
    """Ray packs fractional-GPU trials on one device but does not cap their memory."""
    if 0 < share < 1 and _cuda():
        import torch

        torch.cuda.set_per_process_memory_fraction(share)


# ---------------------------------------------------------------- on the driver


class PrunedAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna the truth about how a trial ended.

    Stock OptunaSearch tells a trial that ASHA stopped as COMPLETE with its half-trained
    score, and TPE then learns from it. Here: finished -> COMPLETE, stopped early ->
    PRUNED (its intermediate values were reported epoch by epoch), diverged or errored ->
    FAIL.
    """

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if result.get(STATE) == "running":  # epoch results; the closing summary is not one
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        self._completed_trials.add(trial_id)
        state = (result or {}).get(STATE)
        try:
            if error or state == "diverged":
                self._ot_study.tell(self._ot_trials[trial_id], state=TrialState.FAIL)
            elif state == "finished":
                self._ot_study.tell(self._ot_trials[trial_id], result[self.metric])
            else:
                self._ot_study.tell(self._ot_trials[trial_id], state=TrialState.PRUNED)
        except RuntimeError as error:
            # GridSampler calls study.stop() once the grid is done, which Optuna allows only
            # inside study.optimize; the trial has been told by then.
            if "Study.stop" not in str(error):
                raise


class TrialRunCloser(tune.Callback):
    """Closes the MLflow runs of trials that could not close their own."""

    def __init__(self, settings: SweepSettings):
        self.settings = settings

    def on_trial_complete(self, iteration, trials, trial, **info):
        _close_if_open(self.settings, trial.trial_id, "KILLED", "pruned")

    def on_trial_error(self, iteration, trials, trial, **info):
        _close_if_open(self.settings, trial.trial_id, "FAILED", "failed")


def _close_if_open(settings: SweepSettings, trial_id: str, status: str, label: str) -> None:
    tags = {TRIAL_TAG: trial_id, "mlflow.parentRunId": settings.parent_run_id}
    run = TrackedRun.find(
        tracking_uri=settings.tracking_uri, experiment=settings.experiment, tags=tags
    )
    if run is not None and run.status == "RUNNING":
        run.close(status, label)


class ConsoleProgress(tune.Callback):
    """One line whenever a trial starts or ends: how many run, are done, were pruned."""

    def __init__(self, total: int, metric: str, mode: str):
        self.total, self.metric, self.mode = total, metric, mode
        self.started = time.time()
        self.best: tuple[float, str] | None = None
        self.ended: dict[str, str] = {}

    def on_trial_start(self, iteration, trials, trial, **info):
        self._print(trials)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        value = result.get(self.metric)
        if value is None or not math.isfinite(value):
            return
        better = self.best is None or (
            value > self.best[0] if self.mode == "max" else value < self.best[0]
        )
        if better:
            self.best = (value, trial.trial_id)

    def on_trial_complete(self, iteration, trials, trial, **info):
        state = (trial.last_result or {}).get(STATE)
        self.ended[trial.trial_id] = state if state in ("finished", "diverged") else "pruned"
        self._print(trials)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.ended[trial.trial_id] = "failed"
        self._print(trials)

    def _print(self, trials) -> None:
        running = sum(t.status == "RUNNING" and t.trial_id not in self.ended for t in trials)
        counts = {
            k: sum(v == k for v in self.ended.values())
            for k in ("finished", "pruned", "diverged", "failed")
        }
        best = (
            f"best {self.metric} {self.best[0]:.4f} (trial {self.best[1]})"
            if self.best
            else "no result yet"
        )
        print(
            f"[{time.time() - self.started:6.0f} s] {running} running, "
            f"{len(self.ended)}/{self.total} done ({counts['finished']} finished, "
            f"{counts['pruned']} pruned, {counts['diverged']} diverged, "
            f"{counts['failed']} failed); {best}",
            flush=True,
        )


def sweep_dir(settings: SweepSettings) -> str:
    return os.path.join(settings.storage_path, settings.name)


def run_sweep(settings: SweepSettings, total: int) -> SweepOutcome:
    """Run (or resume) the sweep on Ray; returns the trials, best first."""
    spec = settings.spec
    _connect(settings.address)
    try:
        trainable = tune.with_resources(
            tune.with_parameters(run_trial, settings=settings),
            {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu},
        )
        if settings.resume:
            tuner = tune.Tuner.restore(
                sweep_dir(settings), trainable, resume_unfinished=True, resume_errored=True
            )
        else:
            tuner = tune.Tuner(
                trainable,
                tune_config=_tune_config(settings, total),
                run_config=_run_config(settings, total),
            )
        grid = tuner.fit()
    finally:
        ray.shutdown()
    return SweepOutcome(parent_run_id=settings.parent_run_id, trials=_rows(grid, spec), counts={})


def _connect(address: str) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy output honours verbose=0
    kwargs = dict(log_to_driver=False, configure_logging=True, logging_level="ERROR")
    if address == "local":
        ray.init(address="local", include_dashboard=False, **kwargs)
    else:
        ray.init(address=address, **kwargs)


def _tune_config(settings: SweepSettings, total: int) -> tune.TuneConfig:
    spec = settings.spec
    search = PrunedAwareOptunaSearch(
        DefineByRun(spec),
        metric=spec.metric,
        mode=spec.mode,
        sampler=make_sampler(spec),
        study_name=settings.name,
    )
    if isinstance(spec.scheduler, Asha):
        scheduler = ASHAScheduler(
            time_attr="epoch",
            max_t=spec.max_epochs,
            grace_period=spec.scheduler.grace_period,
            reduction_factor=spec.scheduler.reduction_factor,
            stop_last_trials=False,  # a full-length trial ends itself and closes its run
        )
    else:
        scheduler = FIFOScheduler()
    return tune.TuneConfig(
        metric=spec.metric,
        mode=spec.mode,
        search_alg=search,
        scheduler=scheduler,
        num_samples=total,
        max_concurrent_trials=settings.max_concurrent or spec.max_concurrent,
        reuse_actors=True,  # a new trial skips the worker's start and imports
        trial_dirname_creator=lambda trial: trial.trial_id,
    )


def _run_config(settings: SweepSettings, total: int) -> tune.RunConfig:
    return tune.RunConfig(
        name=settings.name,
        storage_path=settings.storage_path,
        verbose=0,
        callbacks=[
            TrialRunCloser(settings),
            ConsoleProgress(total, settings.spec.metric, settings.spec.mode),
        ],
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        failure_config=tune.FailureConfig(max_failures=2),
    )


def _rows(grid, spec: Spec) -> list[dict[str, Any]]:
    rows = []
    for result in grid:
        frame = result.metrics_dataframe
        values = frame[spec.metric] if frame is not None and spec.metric in frame else []
        values = [v for v in values if isinstance(v, float) and math.isfinite(v)]
        best = (max(values) if spec.mode == "max" else min(values)) if values else None
        metrics = result.metrics or {}
        rows.append(
            {
                "trial": metrics.get("trial_id") or os.path.basename(result.path),
                "state": metrics.get(STATE, "pruned") if result.error is None else "failed",
                "epochs": metrics.get("epoch"),
                "best": best,
                "params": result.config,
                "run_id": metrics.get("mlflow_run_id"),
                "error": _last_line(result.error),
            }
        )
    worst = -math.inf if spec.mode == "max" else math.inf
    rows.sort(
        key=lambda r: r["best"] if r["best"] is not None else worst, reverse=spec.mode == "max"
    )
    for row in rows:
        if row["state"] == "running":
            row["state"] = "pruned"
    return rows


def _last_line(error: BaseException | None) -> str | None:
    """What went wrong in a trial, without Ray's traceback: the exception's own line."""
    if error is None:
        return None
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def can_resume(settings: SweepSettings) -> bool:
    return tune.Tuner.can_restore(sweep_dir(settings))


def check_address(address: str) -> None:
    if address not in ("local", "auto") and not address.startswith("ray://") and ":" not in address:
        raise UsageError(
            f"--address: 'local', 'auto', ray://HOST:PORT or HOST:PORT, got {address!r}"
        )
