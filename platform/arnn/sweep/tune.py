"""Ray Tune: the one module that runs a sweep on Ray. A sweep is a Tuner over `run_trial`,
with Optuna choosing the parameters, ASHA stopping the hopeless, and every trial one MLflow
run nested under the sweep's run.

MLflow bookkeeping, and why it sits where it does:
- a trial finds its run by the tag `arnn.trial_id` before creating one, so a trial that
  Ray retries or a sweep that is resumed keeps exactly one run per trial (and a trial a
  killed driver had not yet saved, whose slot the resumed sweep runs again, has its run
  deleted by the driver: arnn.sweep.driver);
- a trial logs, with every epoch, its score so far (`trial_score`, arnn.scoring's rule);
- a trial that ends by itself closes its own run (FINISHED, tag arnn.status finished or
  diverged); one that errors closes it FAILED; a trial that ASHA stops never runs another
  line, so the driver's callback closes its run as KILLED with arnn.status=pruned;
- a sweep stopped by SIGINT or SIGTERM asks Tune to stop gracefully: Tune saves its state
  with the trials in flight unfinished (so `--resume` continues them) and tells neither
  Optuna nor the callbacks about them; the driver then closes their runs as interrupted.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import ray
from optuna.trial import TrialState
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.logger import JsonLoggerCallback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search.optuna import OptunaSearch

from arnn import record, scoring
from arnn.interrupt import Interrupted, StopSignals
from arnn.sweep import names
from arnn.sweep.space import DefineByRun, make_sampler, trial_state
from arnn.sweep.spec import Asha, Spec
from arnn.tracking import TrackedRun, config_params, run_tags
from arnn.train import EpochMetrics, kernel_path, read_checkpoint, resolve_device, train

# The trial's number in the sweep (Optuna's, from 0), which the searcher adds to the values
# it suggests: the trainable takes it out again, and names the trial's run by it.
TRIAL_NUMBER = "arnn_trial_number"
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
    score_test: bool = False  # search trials leave the test split to the final runs
    trial_kind: Literal["trial", "final"] = "trial"  # arnn.kind of the trials' runs
    study_storage: str | None = None  # where the driver writes the Optuna study
    # The driver's provenance (arnn.provenance), recorded on every trial: a cluster's
    # workers run the same code from a copy that may hold no git checkout.
    provenance: tuple[tuple[str, str], ...] = ()


@dataclass
class TuneOutcome:
    """What Ray saw: the signal that stopped the sweep (None when it ran to its end), each
    errored trial's last error line, and the ids of every trial Tune knows (after a
    resume, those it restored and those it added)."""

    interrupted_by: int | None
    errors: list[str]
    trial_ids: frozenset[str]


# ---------------------------------------------------------------- inside a trial


def _attempt_tags(saved: dict | None) -> dict[str, Any]:
    """Of this attempt at a trial: where it ran and the epoch it went on from."""
    return {
        record.RESUMED_FROM_EPOCH: 0 if saved is None else saved["epoch"],
        record.NODE_ID: ray.get_runtime_context().get_node_id(),
        record.NODE_IP: ray.util.get_node_ip_address(),
    }


def run_trial(suggested: dict[str, Any], settings: SweepSettings) -> None:
    """The Tune function trainable: one trial, reporting every epoch with a checkpoint."""
    spec = settings.spec
    sampled = {k: v for k, v in suggested.items() if k != TRIAL_NUMBER}
    placement = {"data_dir": settings.data_dir} if settings.data_dir else {}
    config = spec.trial_config(sampled, **placement)
    _cap_gpu_memory(spec.resources.gpu)
    trial_id = tune.get_context().get_trial_id()
    folder = Path(tempfile.mkdtemp(prefix="arnn-trial-"))
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        checkpoint.to_directory(str(folder))
    saved = read_checkpoint(folder)
    run = _trial_run(settings, trial_id, config, sampled, suggested.get(TRIAL_NUMBER))
    run.set_tags(_attempt_tags(saved))
    values = [m[spec.metric] for m in (saved or {}).get("history", [])]

    def report(metrics: EpochMetrics, checkpoint_dir: Path | None) -> None:
        values.append(getattr(metrics, spec.metric))
        score = scoring.score(values, spec.mode)
        run.log_epoch(metrics, extra={record.TRIAL_SCORE: score, "epochs": metrics.epoch})
        result = {
            **metrics.as_dict(),
            record.TRIAL_SCORE: score,
            STATE: "running",
            "mlflow_run_id": run.run_id,
        }
        tune.report(result, checkpoint=tune.Checkpoint.from_directory(str(checkpoint_dir)))

    started = time.perf_counter()
    try:
        result = train(config, report=report, checkpoint_dir=folder, score_test=settings.score_test)
    except SystemExit:  # how tune.report ends a trial that was stopped: the driver says why
        raise
    except BaseException as error:
        run.set_tags({record.ERROR: last_line(error)})
        run.close("FAILED", scoring.FAILED)
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
            record.TRIAL_SCORE: scoring.score(
                [getattr(m, spec.metric) for m in result.history], spec.mode
            ),
            "mlflow_run_id": run.run_id,
        }
    )


def _trial_run(settings: SweepSettings, trial_id: str, config, sampled, number) -> TrackedRun:
    """This trial's MLflow run: the one it had before a retry or resume, else a new one."""
    tags = {record.TRIAL_ID: trial_id, "mlflow.parentRunId": settings.parent_run_id}
    run = TrackedRun.find(
        tracking_uri=settings.tracking_uri, experiment=settings.experiment, tags=tags
    )
    if run is not None:
        attempts = int(run.client.get_run(run.run_id).data.tags.get(record.ATTEMPTS, "1"))
        run.set_tags({record.ATTEMPTS: attempts + 1})
        run.reopen(provenance=dict(settings.provenance) or None)
        return run
    device = resolve_device(config.runtime.device)
    return TrackedRun.start(
        tracking_uri=settings.tracking_uri,
        experiment=settings.experiment,
        run_name=(
            names.final_name(config.seed)
            if settings.trial_kind == record.FINAL_RUN
            else names.trial_name(number, sampled)
        ),
        params={
            **config_params(config),
            **{f"{record.SAMPLED_PARAM_PREFIX}{k}": str(v) for k, v in sampled.items()},
        },
        tags={
            **run_tags(config, str(device), kernel_path(config, device)),
            record.TRIAL_ID: trial_id,
            record.SWEEP: settings.name,
            record.KIND: settings.trial_kind,
            record.TRIAL_NUMBER: "" if number is None else str(number),
            record.ATTEMPTS: "1",
            record.SAMPLED: json.dumps(sampled, sort_keys=True),
            **dict(settings.provenance),
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
    score, and TPE then learns from it. Here: finished -> COMPLETE with the trial's score
    (arnn.scoring: its best epoch, not its last), stopped early -> PRUNED (its
    intermediate values were reported epoch by epoch), diverged or errored -> FAIL. Each
    told trial carries its outcome as the user attribute `arnn_outcome`. A trial in flight
    when the sweep is interrupted is not told anything: `--resume` finishes it.

    It reads OptunaSearch's private `_ot_trials`, `_completed_trials` and `_ot_study`:
    pyproject.toml pins Ray's minor version, and tests/sweep/test_searcher_surface.py
    fails by name when a release moves them.
    """

    def suggest(self, trial_id: str) -> dict | None:
        suggested = super().suggest(trial_id)
        if not isinstance(suggested, dict):  # None (wait) or FINISHED
            return suggested
        return {**suggested, TRIAL_NUMBER: self._ot_trials[trial_id].number}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if result.get(STATE) == "running":  # epoch results; the closing summary is not one
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        self._completed_trials.add(trial_id)
        state = (result or {}).get(STATE)
        score = (result or {}).get(record.TRIAL_SCORE)
        trial = self._ot_trials[trial_id]
        if error:
            outcome = scoring.FAILED
        elif state in (scoring.DIVERGED, scoring.FINISHED):
            outcome = state
        else:
            outcome = scoring.PRUNED
        told_state = trial_state(outcome, score)
        told = {"values": score} if told_state == TrialState.COMPLETE else {"state": told_state}
        try:
            trial.set_user_attr("arnn_outcome", outcome)
            self._ot_study.tell(trial, **told)
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
        _close_if_open(self.settings, trial.trial_id, "KILLED", scoring.PRUNED)

    def on_trial_error(self, iteration, trials, trial, **info):
        _close_if_open(self.settings, trial.trial_id, "FAILED", scoring.FAILED)


def _close_if_open(settings: SweepSettings, trial_id: str, status: str, label: str) -> None:
    tags = {record.TRIAL_ID: trial_id, "mlflow.parentRunId": settings.parent_run_id}
    run = TrackedRun.find(
        tracking_uri=settings.tracking_uri, experiment=settings.experiment, tags=tags
    )
    if run is not None and run.status == "RUNNING":
        run.close(status, label)


class ConsoleProgress(tune.Callback):
    """One line whenever what it says changes and the change holds for `settle_s` (a
    trial's end and the next one's start, a moment apart, are one line): how many run,
    how each ended, and for search trials the best finished one's score (arnn.scoring's
    rule) and name (trial_label). Read from the trials Tune passes, so that a resumed
    sweep counts the trials it restored; its clock starts with each Tune run."""

    def __init__(
        self,
        total: int,
        metric: str,
        mode: str,
        kind: Literal["trial", "final"],
        settle_s: float = 1.0,
    ):
        self.total, self.metric, self.mode, self.kind = total, metric, mode, kind
        self.settle_s = settle_s
        self.started = time.time()
        self.seen, self.seen_at, self.said = "", 0.0, ""

    def setup(self, **info):
        # Tune calls it as every run starts, a resumed one's too (whose callbacks are
        # the ones pickled when the sweep first started).
        self.started = time.time()

    def on_trial_start(self, iteration, trials, trial, **info):
        self._see(trials, starting=trial.trial_id)  # Tune marks it RUNNING just after

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._see(trials, ending=trial.trial_id)  # Tune marks it TERMINATED just after

    def on_trial_error(self, iteration, trials, trial, **info):
        self._see(trials)  # marked ERROR already

    def on_step_end(self, iteration, trials, **info):
        if time.time() - self.seen_at >= self.settle_s:
            self._say()

    def on_experiment_end(self, trials, **info):
        self._say()

    def _see(self, trials, starting: str | None = None, ending: str | None = None) -> None:
        line = self._line(trials, starting, ending)
        if line != self.seen:
            self.seen, self.seen_at = line, time.time()

    def _say(self) -> None:
        if self.seen != self.said:
            print(f"[{self.seen_at - self.started:6.0f} s] {self.seen}", flush=True)
            self.said = self.seen

    def _line(self, trials, starting: str | None, ending: str | None) -> str:
        ended = [
            self._record(t)
            for t in trials
            if t.status in (Trial.TERMINATED, Trial.ERROR) or t.trial_id == ending
        ]
        running = sum(
            (t.status == Trial.RUNNING or t.trial_id == starting) and t.trial_id != ending
            for t in trials
        )
        counts = scoring.outcome_counts(ended, self.total)
        line = (
            f"{running} running, {len(ended)}/{self.total} done ({counts['finished']} "
            f"finished, {counts['pruned']} pruned, {counts['diverged']} diverged, "
            f"{counts['failed']} failed)"
        )
        if (
            self.kind == record.TRIAL_RUN
        ):  # final runs are replicas of one configuration, not rivals
            line += f"; {self._best(ended)}"
        return line

    def _best(self, ended: list[scoring.TrialRecord]) -> str:
        best = scoring.best_trial(ended, self.mode)
        if best is None:
            return "no finished trial yet"
        return f"best finished: {self.metric} {best.score:.4f} (trial {best.name})"

    def _record(self, trial) -> scoring.TrialRecord:
        """How an ended trial ended, by its status and its last result."""
        result = trial.last_result or {}
        state = result.get(STATE)
        if trial.status == Trial.ERROR:
            outcome = scoring.FAILED
        else:
            outcome = state if state in (scoring.FINISHED, scoring.DIVERGED) else scoring.PRUNED
        name = trial_label(self.kind, trial.config.get(TRIAL_NUMBER), trial.config)
        return scoring.TrialRecord(
            trial.trial_id, outcome, result.get(record.TRIAL_SCORE), name=name
        )


def trial_label(kind: str, number: int | None, sampled: dict[str, Any]) -> str:
    """A trial as a person reads it, the start of its MLflow run's name: t07 for search
    trial number 6, seed 1002 for a final run. Ray's id (arnn.trial_id) is for tools."""
    if kind == record.FINAL_RUN and "seed" in sampled:
        return names.final_name(sampled["seed"])
    return names.trial_name(number, {})


def sweep_dir(settings: SweepSettings) -> str:
    return os.path.join(settings.storage_path, settings.name)


def run_sweep(settings: SweepSettings, total: int) -> TuneOutcome:
    """Run (or resume) the sweep on the Ray this process is connected to.

    SIGINT or SIGTERM during the run asks Tune to stop gracefully (a second one stops at
    once, raising Interrupted); the outcome says which signal it was."""
    spec = settings.spec
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
    # Tune's own SIGINT handler is off: ours records the signal, then asks Tune to stop
    # the way its handler would (SIGUSR1), so that SIGTERM is handled the same.
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    # Tune's default loggers are off but for the one in _run_config: no one reads their
    # TensorBoard files, and tensorboardX warns, bare, of every non-finite value in a
    # diverged trial's results ("NaN or Inf found in input tensor.").
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    tune_handler = signal.getsignal(signal.SIGUSR1)
    try:
        with StopSignals(on_first=_ask_tune_to_stop) as stop:
            grid = tuner.fit()
    finally:
        signal.signal(signal.SIGUSR1, tune_handler)
    errors = [last_line(result.error) for result in grid if result.error is not None]
    # A trial's id is in every result it reported, and names its folder
    # (trial_dirname_creator below) whether it reported or not.
    trial_ids = frozenset(
        {result.metrics.get("trial_id") for result in grid if result.metrics}
        | {PurePosixPath(result.path).name for result in grid if result.path}
    )
    return TuneOutcome(interrupted_by=stop.signum, errors=errors, trial_ids=trial_ids)


def _ask_tune_to_stop(signum: int) -> None:
    """Tune listens for SIGUSR1 while it runs: it saves its state and stops the trials,
    leaving them unfinished for a resume. Outside that window there is nothing to save."""
    if signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, signal.SIG_IGN, None):
        raise Interrupted(signum)
    print(
        f"\n{signal.Signals(signum).name}: stopping the sweep; its state is saved for "
        "--resume (send it again to stop at once)",
        flush=True,
    )
    os.kill(os.getpid(), signal.SIGUSR1)


def _tune_config(settings: SweepSettings, total: int) -> tune.TuneConfig:
    spec = settings.spec
    search = PrunedAwareOptunaSearch(
        DefineByRun(spec),
        metric=spec.metric,
        mode=spec.mode,
        sampler=make_sampler(spec),
        points_to_evaluate=[dict(point) for point in spec.points_to_evaluate] or None,
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
            ConsoleProgress(total, settings.spec.metric, settings.spec.mode, settings.trial_kind),
            JsonLoggerCallback(),  # each trial's result.json: what Tune's results read back
        ],
        # Three, not one: after a killed driver, Tune resumes from its last saved state,
        # which may name a checkpoint or two older than a trial's newest (seen here: with
        # one kept, a resumed trial found its checkpoint deleted and failed).
        checkpoint_config=tune.CheckpointConfig(num_to_keep=3),
        failure_config=tune.FailureConfig(max_failures=2),
    )


def last_line(error: BaseException | None) -> str | None:
    """What went wrong in a trial, without Ray's traceback: the exception's own line."""
    if error is None:
        return None
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def can_resume(settings: SweepSettings) -> bool:
    return tune_state_exists(settings.storage_path, settings.name)


def tune_state_exists(storage_path: str, name: str) -> bool:
    return tune.Tuner.can_restore(os.path.join(storage_path, name))
