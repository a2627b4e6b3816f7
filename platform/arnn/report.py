"""Every sweep's report, read back from MLflow alone (no Ray): five files.

- curves.png: the spec's metric of every trial over its epochs, by how the trial ended;
- map.png: the outcome map over two parameters (Spec.map_params), each trial a point
  coloured by its score, diverged and failed trials marked apart: where training is stable;
- importance.png, importance.json: hyperparameter importances (optuna.importance, its
  default evaluator) over the finished trials;
- trials.csv: one row per trial, its sampled values, outcome, score, epochs and seconds.

`write_report` logs them at the root of the sweep's MLflow run, or writes them into a folder.
Scores and outcomes are arnn.scoring's, read the way the sweep's summary reads them
(arnn.results.trial_records), so that the report and the console agree.
"""

from __future__ import annotations

import json
import math
import tempfile
import textwrap
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pydantic
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import blended_transform_factory
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from arnn import scoring
from arnn.errors import UsageError
from arnn.results import number_or_none, trial_records
from arnn.sweep.names import short
from arnn.sweep.space import distributions
from arnn.sweep.spec import (
    SPEC_TAG,
    BoolParam,
    CategoricalParam,
    Spec,
    is_numeric,
    parse_spec,
)
from arnn.sweep.study import number_of
from arnn.tracking import connect, runs_frame

CURVES, MAP, IMPORTANCE_PNG, IMPORTANCE_JSON, TRIALS_CSV = (
    "curves.png",
    "map.png",
    "importance.png",
    "importance.json",
    "trials.csv",
)
FILES = (CURVES, MAP, IMPORTANCE_PNG, IMPORTANCE_JSON, TRIALS_CSV)
SPEC_ARTIFACT = "spec/spec.yaml"
RUNNING = "running"  # a trial whose MLflow run is still open: no outcome yet
DPI = 110
METRIC_UNITS = {
    "val_accuracy": "fraction correct",
    "train_accuracy": "fraction correct",
    "val_loss": "task loss per example",
    "train_loss": "task loss per example",
}
# How each outcome is drawn: colour and line style on the curves, marker on the map.
STYLES = {
    scoring.FINISHED: {"color": "#1f77b4", "ls": "-", "marker": "o"},
    scoring.PRUNED: {"color": "#ff7f0e", "ls": "--", "marker": "v"},
    scoring.INTERRUPTED: {"color": "#9467bd", "ls": ":", "marker": "D"},
    scoring.DIVERGED: {"color": "#d62728", "ls": "-.", "marker": "X"},
    scoring.FAILED: {"color": "#555555", "ls": ":", "marker": "s"},
    RUNNING: {"color": "#2ca02c", "ls": "-", "marker": "P"},
}
LABELS = {
    scoring.FINISHED: "finished",
    scoring.PRUNED: "pruned (stopped by ASHA)",
    scoring.INTERRUPTED: "interrupted",
    scoring.DIVERGED: "diverged",
    scoring.FAILED: "failed",
    RUNNING: "still running",
}


@dataclass(frozen=True)
class ReportFiles:
    """Where a sweep's report went: `location` is the folder written (out=...), or the
    artifact URI of the sweep's run, whose root holds `files` (logged=True)."""

    sweep: str
    parent_run_id: str
    location: str
    logged: bool
    files: tuple[str, ...] = FILES
    notes: tuple[str, ...] = ()  # plain-language caveats, e.g. too few trials for importance


@dataclass
class _Trial:
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
class _Sweep:
    name: str
    run_id: str
    spec: Spec
    trials: list[_Trial]  # in the order the searcher asked for them
    best: scoring.TrialRecord | None
    notes: list[str] = field(default_factory=list)

    @property
    def metric(self) -> str:
        return self.spec.metric

    def counts(self) -> str:
        found = [t.outcome for t in self.trials]
        kinds = [k for k in (*scoring.OUTCOMES, RUNNING) if k in found]
        return f"{len(found)} trials: " + ", ".join(f"{found.count(k)} {k}" for k in kinds)


def write_report(
    tracking_uri: str, experiment: str, sweep: str, out: Path | str | None = None
) -> ReportFiles:
    """Write sweep `sweep`'s report (its name, the tag arnn.sweep, or its run id): with `out`
    None, as artifacts at the root of the sweep's MLflow run; else into folder `out`, logging
    nothing. An unknown sweep is one UsageError line naming the sweeps there are."""
    client = connect(tracking_uri)
    parent = _find_parent(client, tracking_uri, experiment, sweep)
    state = _read_sweep(client, tracking_uri, experiment, parent)
    with tempfile.TemporaryDirectory(prefix="arnn-report-") as scratch:
        folder = Path(scratch) if out is None else Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        _write_csv(state, folder / TRIALS_CSV)
        _plot_curves(state, folder / CURVES)
        _plot_map(state, folder / MAP)
        _write_importance(state, folder / IMPORTANCE_JSON, folder / IMPORTANCE_PNG)
        if out is None:
            for name in FILES:
                client.log_artifact(state.run_id, str(folder / name))
            location = client.get_run(state.run_id).info.artifact_uri
        else:
            location = str(folder.resolve())
    return ReportFiles(
        sweep=state.name,
        parent_run_id=state.run_id,
        location=location,
        logged=out is None,
        notes=tuple(state.notes),
    )


# ---------------------------------------------------------------- reading MLflow


def _find_parent(client: MlflowClient, uri: str, experiment: str, sweep: str):
    """The sweep's run, by the tag arnn.sweep or by run id (the newest where several)."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = sorted(e.name for e in client.search_experiments(max_results=1000))
        raise UsageError(
            f"sweep {sweep!r}: no experiment {experiment!r} in {uri} "
            f"(experiments there: {', '.join(names) or 'none'})"
        )
    for query in (f"attributes.run_id = '{sweep}'", f"tags.`arnn.sweep` = '{sweep}'"):
        found_runs = client.search_runs(
            [found.experiment_id],
            filter_string=f"tags.`arnn.kind` = 'sweep' and {query}",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if found_runs:
            return found_runs[0]
    parents = client.search_runs(
        [found.experiment_id],
        filter_string="tags.`arnn.kind` = 'sweep'",
        order_by=["attributes.start_time DESC"],
        max_results=21,
    )
    names = list(dict.fromkeys(r.data.tags.get("arnn.sweep", r.info.run_id) for r in parents))
    listed = ", ".join(names[:20]) + (" and more" if len(names) > 20 else "")
    raise UsageError(
        f"sweep {sweep!r}: no sweep of that name or run id in experiment {experiment!r} of "
        f"{uri} (sweeps there, newest first: {listed or 'none'})"
    )


def _read_spec(client: MlflowClient, run) -> Spec:
    """The spec the sweep ran: its tag arnn.spec, else its artifact spec/spec.yaml."""
    tags = run.data.tags
    source = f"sweep {tags.get('arnn.sweep', run.info.run_id)}'s spec"
    if SPEC_TAG in tags:
        raw = json.loads(tags[SPEC_TAG])
    else:
        try:
            with tempfile.TemporaryDirectory() as folder:
                path = client.download_artifacts(run.info.run_id, SPEC_ARTIFACT, folder)
                raw = yaml.safe_load(Path(path).read_text())
        except (MlflowException, OSError) as error:
            raise UsageError(
                f"{source}: the run has neither the tag {SPEC_TAG} nor the artifact "
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


def _read_sweep(client: MlflowClient, uri: str, experiment: str, parent) -> _Sweep:
    spec = _read_spec(client, parent)
    run_id = parent.info.run_id
    frame = runs_frame(uri, experiment, f"tags.`mlflow.parentRunId` = '{run_id}'")
    # Every run nested under the sweep's is one of its trials (arnn.kind trial, or final).
    rows = {row["run_id"]: row for row in frame.to_dict("records")} if not frame.empty else {}
    records = trial_records(frame)
    trials = []
    for record in records:
        row = rows[record.run_id]
        outcome = RUNNING if row.get("status") == "RUNNING" else record.outcome
        seconds = number_or_none(row.get("metrics.train_seconds"))
        if seconds is None:  # pruned, failed, in flight: the epochs it trained
            epochs = client.get_metric_history(record.run_id, "epoch_seconds")
            seconds = sum(m.value for m in epochs) if epochs else None
        history = sorted(
            (m.step, m.value) for m in client.get_metric_history(record.run_id, spec.metric)
        )
        trials.append(
            _Trial(
                record,
                number_of(row),
                str(row.get("tags.mlflow.runName") or ""),
                outcome,
                seconds,
                history,
            )
        )
    trials.sort(key=lambda t: (t.number is None, t.number or 0, t.record.trial))
    best = scoring.best_trial(records, spec.mode)
    name = parent.data.tags.get("arnn.sweep", run_id)
    state = _Sweep(name, run_id, spec, trials, best)
    if not trials:
        state.notes.append(f"sweep {name}: no trial has an MLflow run yet")
    return state


# ---------------------------------------------------------------- trials.csv


def _write_csv(state: _Sweep, path: Path) -> None:
    names = list(state.spec.params)
    names += sorted({k for t in state.trials for k in t.record.sampled} - set(names))
    rows = [
        {
            "number": t.number,
            "name": t.name,
            "trial": t.record.trial,
            **{name: t.record.sampled.get(name) for name in names},
            "outcome": t.outcome,
            "score": t.record.score,
            "epochs": t.record.epochs if t.record.epochs is not None else t.last_epoch,
            "seconds": t.seconds,
            "run_id": t.record.run_id,
        }
        for t in state.trials
    ]
    columns = ["number", "name", "trial", *names, "outcome", "score", "epochs", "seconds", "run_id"]
    pd.DataFrame(rows, columns=columns).to_csv(path, index=False)


# ---------------------------------------------------------------- figures


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path) -> None:
    figure.savefig(path, dpi=DPI)


def _message_figure(path: Path, title: str, message: str) -> None:
    """A figure that says in words why there is nothing to draw."""
    figure = _figure(8, 3.5)
    axis = figure.add_subplot()
    axis.set_axis_off()
    axis.set_title(title, fontsize=12)
    axis.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=11)
    figure.tight_layout()
    _save(figure, path)


def _metric_label(metric: str) -> str:
    unit = METRIC_UNITS.get(metric)
    return f"{metric} ({unit})" if unit else metric


def _plot_curves(state: _Sweep, path: Path) -> None:
    metric = state.metric
    title = f"sweep {state.name}: {metric} per epoch, one line per trial"
    drawn = [t for t in state.trials if t.history or t.outcome == scoring.DIVERGED]
    if not drawn:
        _message_figure(path, title, f"{state.counts()}\nno trial has logged an epoch yet")
        return
    figure = _figure(9.5, 5.8)
    axis = figure.add_subplot()
    bottom = blended_transform_factory(axis.transData, axis.transAxes)
    seen: list[str] = []
    for trial in drawn:
        style = STYLES[trial.outcome]
        seen.append(trial.outcome)
        epochs = [e for e, _ in trial.history]
        values = [v for _, v in trial.history]
        if trial.history:
            axis.plot(epochs, values, color=style["color"], ls=style["ls"], lw=1.4, alpha=0.85)
        if trial.outcome == scoring.DIVERGED:  # the epoch it diverged in logged nothing
            where = trial.last_epoch + 1
            if trial.history:
                axis.plot([epochs[-1], where], [values[-1]] * 2, color=style["color"], ls=":")
                axis.plot(where, values[-1], "x", color=style["color"], ms=11, mew=2.5, zorder=5)
            else:
                axis.plot(where, 0.03, "x", color=style["color"], ms=11, mew=2.5, transform=bottom)
        elif trial.outcome != scoring.FINISHED and trial.history:
            axis.plot(
                epochs[-1],
                values[-1],
                style["marker"],
                color=style["color"],
                ms=8,
                mec="black",
                mew=0.6,
                zorder=4,
            )
    handles = []
    for outcome in (*scoring.OUTCOMES, RUNNING):
        if outcome not in seen:
            continue
        style = STYLES[outcome]
        label = f"{LABELS[outcome]} ({seen.count(outcome)})"
        marker = {
            scoring.FINISHED: None,
            scoring.DIVERGED: "x",
        }.get(outcome, style["marker"])
        if outcome == scoring.PRUNED:
            label += ": ▼ where stopped"
        elif outcome == scoring.DIVERGED:
            label += ": × at the epoch it diverged in"
        elif outcome != scoring.FINISHED:
            label += ": marker at its last epoch"
        handles.append(
            Line2D([], [], color=style["color"], ls=style["ls"], marker=marker, label=label)
        )
    best = next((t for t in state.trials if state.best and t.record is state.best), None)
    if best is not None and best.history:
        axis.plot(*zip(*best.history, strict=True), color="black", lw=2.6, zorder=6)
        pick = max if state.spec.mode == "max" else min
        at, value = pick(
            ((e, v) for e, v in best.history if math.isfinite(v)), key=lambda ev: ev[1]
        )
        axis.plot(at, value, "*", color="gold", ms=18, mec="black", zorder=7)
        handles.append(
            Line2D(
                [],
                [],
                color="black",
                lw=2.6,
                marker="*",
                mfc="gold",
                mec="black",
                ms=14,
                label=f"best: {best.name or best.record.trial}, {metric} {value:.4g} at epoch {at}",
            )
        )
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel("epoch (passes over the training set)")
    axis.set_ylabel(_metric_label(metric))
    hidden = [t for t in state.trials if t not in drawn]
    subtitle = state.counts()
    if hidden:
        subtitle += f"; {len(hidden)} without any epoch not drawn"
    axis.set_title(f"{title}\n{subtitle}", fontsize=11)
    axis.grid(alpha=0.3)
    axis.legend(handles=handles, fontsize=9, loc="best", framealpha=0.9)
    figure.tight_layout()
    _save(figure, path)


@dataclass(frozen=True)
class _Axis:
    """How one parameter lies along an axis of the outcome map: a float or int one on its
    range (log where the spec samples it on a log scale), a categorical or bool one as
    evenly spaced choices (0 among them, or names such as a scheme), its trials spread a
    little so that they do not hide each other."""

    name: str
    param: Any

    @property
    def choices(self) -> list | None:
        if isinstance(self.param, CategoricalParam):
            return list(self.param.choices)
        if isinstance(self.param, BoolParam):
            return [False, True]
        return None

    @property
    def log(self) -> bool:
        return self.choices is None and self.param.log

    def positions(self, values: list) -> list[float]:
        if self.choices is None:
            return [float(v) for v in values]
        # the i-th trial at a choice is shifted by a fraction of the spacing, the first not
        return [
            self.choices.index(v) + 0.3 * (((i * 0.618034 + 0.5) % 1.0) * 2 - 1)
            for i, v in enumerate(values)
        ]

    def lay_out(self, axis, along: str) -> None:
        set_scale, set_limits, set_ticks, set_label = (
            getattr(axis, f"set_{along}{part}") for part in ("scale", "lim", "ticks", "label")
        )
        if self.choices is not None:
            set_limits(-0.5, len(self.choices) - 0.5)
            set_ticks(range(len(self.choices)), [short(c, 4) for c in self.choices])
            set_label(f"{self.name} (choices)")
            return
        low, high = float(self.param.low), float(self.param.high)
        if self.log:
            set_scale("log")
            pad = (high / low) ** 0.06 if high > low else 2.0
            set_limits(low / pad, high * pad)
        else:
            pad = 0.06 * (high - low) if high > low else max(abs(low) * 0.1, 1.0)
            set_limits(low - pad, high + pad)
        scale = "log" if self.log else "linear"
        searched = f"{self.param.type} from {short(low, 4)} to {short(high, 4)}"
        set_label(f"{self.name} ({scale} scale, {searched})")


def _plot_map(state: _Sweep, path: Path) -> None:
    spec, metric = state.spec, state.metric
    pair = spec.map_params()
    if pair is None:
        numeric = [n for n, p in spec.params.items() if is_numeric(p)]
        _message_figure(
            path,
            f"sweep {state.name}: outcome map",
            "No outcome map: this sweep does not search two numeric parameters\n"
            f"(numeric parameters searched: {', '.join(numeric) or 'none'}; "
            f"all searched: {', '.join(spec.params) or 'none'}).",
        )
        return
    x_name, y_name = pair
    x_axis, y_axis = _Axis(x_name, spec.params[x_name]), _Axis(y_name, spec.params[y_name])
    placed = [t for t in state.trials if x_name in t.record.sampled and y_name in t.record.sampled]
    left_out = len(state.trials) - len(placed)
    xs = x_axis.positions([t.record.sampled[x_name] for t in placed])
    ys = y_axis.positions([t.record.sampled[y_name] for t in placed])
    notes = [
        f"{a.name} has choices: trials spread around each" for a in (x_axis, y_axis) if a.choices
    ]
    if left_out:
        notes.append(
            f"{left_out} of {len(state.trials)} trials left out: they did not sample "
            f"{x_name} and {y_name} (conditional parameters)"
        )
        state.notes.append(f"map: {notes[-1]}")

    figure = _figure(9, 6.8)
    axis = figure.add_subplot()
    scores = [t.record.score for t in placed if t.record.score is not None]
    scores = [s for s in scores if math.isfinite(s)]
    norm = Normalize(min(scores), max(scores)) if scores else None
    if norm is not None and norm.vmin == norm.vmax:
        norm = Normalize(
            norm.vmin - 0.5 * abs(norm.vmin or 1), norm.vmax + 0.5 * abs(norm.vmax or 1)
        )
    cmap = "viridis" if spec.mode == "max" else "viridis_r"
    mappable = None
    seen: list[str] = []
    for outcome in (*scoring.OUTCOMES, RUNNING):
        index = [i for i, t in enumerate(placed) if t.outcome == outcome]
        if not index:
            continue
        seen.append(outcome)
        px, py = [xs[i] for i in index], [ys[i] for i in index]
        style = STYLES[outcome]
        if outcome == scoring.DIVERGED:
            axis.scatter(px, py, marker="X", s=110, c=style["color"], edgecolors="black", lw=0.6)
            continue
        if outcome == scoring.FAILED:
            axis.scatter(px, py, marker="s", s=70, facecolors="none", edgecolors="black", lw=1.4)
            continue
        values = [placed[i].record.score for i in index]
        has = [v is not None and math.isfinite(v) for v in values]
        if any(has) and norm is not None:
            mappable = axis.scatter(
                [p for p, h in zip(px, has, strict=True) if h],
                [p for p, h in zip(py, has, strict=True) if h],
                c=[v for v, h in zip(values, has, strict=True) if h],
                cmap=cmap,
                norm=norm,
                marker=style["marker"],
                s=85 if outcome == scoring.FINISHED else 70,
                edgecolors="black",
                lw=0.6,
                zorder=3,
            )
        if not all(has):
            axis.scatter(
                [p for p, h in zip(px, has, strict=True) if not h],
                [p for p, h in zip(py, has, strict=True) if not h],
                c="lightgrey",
                marker=style["marker"],
                s=70,
                edgecolors="black",
                lw=0.6,
                zorder=3,
            )
    handles = []
    for outcome in seen:
        style = STYLES[outcome]
        count = sum(t.outcome == outcome for t in placed)
        label = f"{LABELS[outcome]} ({count})"
        if outcome == scoring.DIVERGED:
            handle = Line2D([], [], ls="", marker="X", ms=10, mfc=style["color"], mec="black")
        elif outcome == scoring.FAILED:
            handle = Line2D([], [], ls="", marker="s", ms=8, mfc="none", mec="black", mew=1.4)
        else:
            handle = Line2D([], [], ls="", marker=style["marker"], ms=9, mfc="#9fc9a0", mec="black")
            label += ", colour = score"
        handle.set_label(label)
        handles.append(handle)
    best = next((i for i, t in enumerate(placed) if state.best and t.record is state.best), None)
    if best is not None:
        axis.scatter(
            xs[best], ys[best], marker="o", s=380, facecolors="none", edgecolors="red", lw=2
        )
        label = f"best: {placed[best].name or state.best.trial} ({metric} {state.best.score:.4g})"
        handles.append(
            Line2D([], [], ls="", marker="o", ms=16, mfc="none", mec="red", mew=2, label=label)
        )
    if mappable is not None:
        bar = figure.colorbar(mappable, ax=axis)
        bar.set_label(
            f"score: best {metric} over the trial's epochs ({METRIC_UNITS.get(metric, '')})"
        )
    x_axis.lay_out(axis, "x")
    y_axis.lay_out(axis, "y")
    subtitle = "\n".join(textwrap.fill(line, 95) for line in [state.counts(), *notes])
    axis.set_title(
        f"sweep {state.name}: outcome map over {x_name} × {y_name}\n{subtitle}", fontsize=10.5
    )
    axis.grid(alpha=0.3)
    if handles:
        axis.legend(handles=handles, fontsize=8.5, loc="best", framealpha=0.9)
    figure.tight_layout()
    _save(figure, path)


# ---------------------------------------------------------------- importance


def _importances(state: _Sweep) -> dict[str, Any]:
    spec = state.spec
    # PED-ANOVA (Optuna 5's default) weighs a conditional parameter by the trials that
    # sampled it; fANOVA would leave it out.
    evaluator = optuna.importance.PedAnovaImportanceEvaluator()
    content: dict[str, Any] = {
        "metric": spec.metric,
        "mode": spec.mode,
        "evaluator": type(evaluator).__name__,
    }
    finished = [t for t in state.trials if t.outcome == scoring.FINISHED]
    scored = [t for t in finished if t.record.score is not None and math.isfinite(t.record.score)]
    every = distributions(spec)
    frozen, skipped = [], []
    for trial in scored:
        params = {k: v for k, v in trial.record.sampled.items() if k in every}
        try:
            frozen.append(
                optuna.trial.create_trial(
                    params=params,
                    distributions={k: every[k] for k in params},
                    value=trial.record.score,
                )
            )
        except ValueError:  # a value outside the spec's range: not what the sweep searched
            skipped.append(trial.record.trial)
    content["finished_trials"] = len(frozen)
    if len(scored) < len(finished):
        content["finished_without_score"] = len(finished) - len(scored)
    if skipped:
        content["left_out"] = {"outside the spec's ranges": skipped}
    varying = [
        name
        for name in spec.params
        if len({json.dumps(t.params[name]) for t in frozen if name in t.params}) > 1
    ]
    if not spec.params:
        content["note"] = "the sweep searches no parameters: there is nothing to rank"
    elif len(frozen) < 2:
        content["note"] = (
            f"only {len(frozen)} trial finished with a score; importances need at least 2"
            if len(frozen) == 1
            else "no trial finished with a score; importances need at least 2"
        )
    elif not varying:
        content["note"] = (
            f"no parameter took more than one value over the {len(frozen)} finished trials: "
            "there is nothing to rank"
        )
    if "note" in content:
        return content

    direction = "maximize" if spec.mode == "max" else "minimize"
    study = optuna.create_study(direction=direction)
    study.add_trials(frozen)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        values = optuna.importance.get_param_importances(study, evaluator=evaluator)
    said = list(dict.fromkeys(str(w.message) for w in caught))
    if said:
        content["optuna_warnings"] = said
    assessed = set(values)
    not_assessed = [name for name in spec.params if name not in assessed]
    if not_assessed:
        content["not_assessed"] = {
            name: "not sampled by every finished trial (conditional), which "
            f"{content['evaluator']} needs"
            if any(name in t.params for t in frozen)
            else "no finished trial sampled it"
            for name in not_assessed
        }
    if not values:
        content["note"] = "the evaluator assessed no parameter (see not_assessed)"
        return content
    content["importances"] = {name: float(value) for name, value in values.items()}
    if len(frozen) < 20:
        content["caveat"] = (
            f"only {len(frozen)} finished trials: importances from so few are rough; "
            + "Optuna advises 5 or more in the top 10% for PED-ANOVA"
        )
    return content


def _write_importance(state: _Sweep, json_path: Path, png_path: Path) -> None:
    # create_study announces itself at INFO: not on a report's console
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        content = _importances(state)
    finally:
        optuna.logging.set_verbosity(verbosity)
    json_path.write_text(json.dumps(content, indent=2) + "\n")
    title = f"sweep {state.name}: hyperparameter importance for {state.metric}"
    if "note" in content:
        state.notes.append(f"importance: {content['note']}")
        _message_figure(png_path, title, textwrap.fill(f"No importances: {content['note']}.", 70))
        return
    for name, why in content.get("not_assessed", {}).items():
        state.notes.append(f"importance: {name} not assessed: {why}")
    values = content["importances"]
    names = list(values)[::-1]  # the most important on top
    figure = _figure(8.5, 2.4 + 0.5 * len(names))
    axis = figure.add_subplot()
    bars = axis.barh(names, [values[n] for n in names], color="#1f77b4")
    axis.bar_label(bars, labels=[f"{values[n]:.2f}" for n in names], padding=3, fontsize=9)
    axis.set_xlim(0, max(1.0, max(values.values()) * 1.15))
    axis.set_xlabel("importance (share of the total; the shares sum to 1)")
    axis.set_ylabel("searched parameter")
    subtitle = f"{content['evaluator']} over {content['finished_trials']} finished trials"
    if "caveat" in content:
        subtitle += " (few: rough)"
    axis.set_title(f"{title}\n{subtitle}", fontsize=11)
    axis.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    _save(figure, png_path)
