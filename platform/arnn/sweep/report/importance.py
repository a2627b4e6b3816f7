"""importance.png, importance.json: hyperparameter importances, by Optuna's own evaluator
(PED-ANOVA, Optuna 5's default) and its own figure (optuna.visualization.matplotlib), on
the sweep's study as arnn.sweep.study keeps it: over its COMPLETE trials, those that
finished with a score. Where there is nothing to rank, both say why in words."""

from __future__ import annotations

import json
import textwrap
import warnings
from pathlib import Path
from typing import Any

import optuna
from matplotlib import pyplot
from optuna.trial import FrozenTrial, TrialState
from optuna.visualization.matplotlib import plot_param_importances

from arnn import scoring
from arnn.sweep.report.drawing import DPI, message_figure, save
from arnn.sweep.report.reading import Sweep

FEW = 20  # fewer finished trials than this: the importances are rough


def write_importance(state: Sweep, json_path: Path, png_path: Path) -> None:
    # PED-ANOVA weighs a conditional parameter by the trials that sampled it; fANOVA would
    # leave it out.
    evaluator = optuna.importance.PedAnovaImportanceEvaluator()
    content = importances(state, evaluator)
    json_path.write_text(json.dumps(content, indent=2) + "\n")
    title = f"sweep {state.name}: hyperparameter importance for {state.metric}"
    if "note" in content:
        state.notes.append(f"importance: {content['note']}")
        message_figure(png_path, title, textwrap.fill(f"No importances: {content['note']}.", 70))
        return
    for name, why in content.get("not_assessed", {}).items():
        state.notes.append(f"importance: {name} not assessed: {why}")
    _plot(state.study, evaluator, content, title, png_path)


def importances(state: Sweep, evaluator) -> dict[str, Any]:
    """What importance.json holds: the evaluator's importances over the study's COMPLETE
    trials (summing to 1), or a note that says why there are none."""
    spec = state.spec
    content: dict[str, Any] = {
        "metric": spec.metric,
        "mode": spec.mode,
        "evaluator": type(evaluator).__name__,
    }
    trials = state.study.get_trials(deepcopy=False) if state.study is not None else []
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    content["finished_trials"] = len(complete)
    finished = [t for t in trials if t.user_attrs.get("arnn_outcome") == scoring.FINISHED]
    if len(finished) > len(complete):
        content["finished_without_score"] = len(finished) - len(complete)
    if note := _why_nothing_to_rank(state, complete):
        content["note"] = note
        return content
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        values = optuna.importance.get_param_importances(state.study, evaluator=evaluator)
    if said := list(dict.fromkeys(str(w.message) for w in caught)):
        content["optuna_warnings"] = said
    if not_assessed := _not_assessed(list(spec.params), values, complete, content["evaluator"]):
        content["not_assessed"] = not_assessed
    if not values:
        content["note"] = "the evaluator assessed no parameter (see not_assessed)"
        return content
    content["importances"] = {name: float(value) for name, value in values.items()}
    if len(complete) < FEW:
        content["caveat"] = (
            f"only {len(complete)} finished trials: importances from so few are rough; "
            + "Optuna advises 5 or more in the top 10% for PED-ANOVA"
        )
    return content


def _why_nothing_to_rank(state: Sweep, complete: list[FrozenTrial]) -> str | None:
    if state.study is None:
        return state.study_problem
    if not state.spec.params:
        return "the sweep searches no parameters: there is nothing to rank"
    if len(complete) < 2:
        return (
            f"only {len(complete)} trial finished with a score; importances need at least 2"
            if len(complete) == 1
            else "no trial finished with a score; importances need at least 2"
        )
    varying = [
        name
        for name in state.spec.params
        if len({json.dumps(t.params[name]) for t in complete if name in t.params}) > 1
    ]
    if not varying:
        return (
            f"no parameter took more than one value over the {len(complete)} finished trials: "
            "there is nothing to rank"
        )
    return None


def _not_assessed(
    searched: list[str], values: dict, complete: list[FrozenTrial], evaluator: str
) -> dict[str, str]:
    """Why each searched parameter the evaluator left out was left out."""
    return {
        name: f"not sampled by every finished trial (conditional), which {evaluator} needs"
        if any(name in t.params for t in complete)
        else "no finished trial sampled it"
        for name in searched
        if name not in values
    }


def _plot(study: optuna.Study, evaluator, content: dict[str, Any], title: str, path: Path) -> None:
    """Optuna's own importance figure, titled with the sweep, the evaluator and the number
    of trials it ranked over."""
    subtitle = f"{content['evaluator']} over {content['finished_trials']} finished trials"
    if "caveat" in content:
        subtitle += " (few: rough)"
    size = (8.5, 2.4 + 0.5 * len(content["importances"]))
    # Optuna's figure is pyplot's, in its ggplot style: both stay inside this context.
    with pyplot.rc_context({"figure.figsize": size, "figure.dpi": DPI}), warnings.catch_warnings():
        # that it is experimental, and what the evaluator said: already in importance.json
        warnings.simplefilter("ignore")
        axis = plot_param_importances(study, evaluator=evaluator, target_name=content["metric"])
        axis.set_title(f"{title}\n{subtitle}", loc="left", fontsize=11)
        axis.set_xlabel("importance (share of the total; the shares sum to 1)")
        axis.set_ylabel("searched parameter")
        try:
            save(axis.figure, path)
        finally:
            pyplot.close(axis.figure)
