"""curves.png: the spec's metric of every trial over its epochs, by how the trial ended:
pruned trials dashed with a mark where ASHA stopped them, diverged ones marked at the
epoch they diverged in, the best one bold with a star at its best epoch."""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import blended_transform_factory

from arnn import scoring
from arnn.sweep.report.drawing import (
    STYLES,
    message_figure,
    metric_label,
    new_figure,
    outcome_handles,
    save,
)
from arnn.sweep.report.reading import Sweep, Trial


def plot_curves(state: Sweep, path: Path) -> None:
    metric = state.metric
    title = f"sweep {state.name}: {metric} per epoch, one line per trial"
    drawn = [t for t in state.trials if t.history or t.outcome == scoring.DIVERGED]
    if not drawn:
        message_figure(path, title, f"{state.counts()}\nno trial has logged an epoch yet")
        return
    figure = new_figure(9.5, 5.8)
    axis = figure.add_subplot()
    for trial in drawn:
        _draw_trial(axis, trial)
    handles = outcome_handles([t.outcome for t in drawn], _curve_handle)
    best = next((t for t in state.trials if state.best and t.record is state.best), None)
    if best is not None and best.history:
        handles.append(_draw_best(axis, best, state.spec.mode, metric))
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel("epoch (passes over the training set)")
    axis.set_ylabel(metric_label(metric))
    hidden = [t for t in state.trials if t not in drawn]
    subtitle = state.counts()
    if hidden:
        subtitle += f"; {len(hidden)} without any epoch not drawn"
    axis.set_title(f"{title}\n{subtitle}", fontsize=11)
    axis.grid(alpha=0.3)
    axis.legend(handles=handles, fontsize=9, loc="best", framealpha=0.9)
    save(figure, path)


def _draw_trial(axis, trial: Trial) -> None:
    """One trial's line in its outcome's style, and the mark where it ended early."""
    style = STYLES[trial.outcome]
    epochs = [e for e, _ in trial.history]
    values = [v for _, v in trial.history]
    if trial.history:
        axis.plot(epochs, values, color=style["color"], ls=style["ls"], lw=1.4, alpha=0.85)
    if trial.outcome == scoring.DIVERGED:  # the epoch it diverged in logged nothing
        where = trial.last_epoch + 1
        if trial.history:
            axis.plot([epochs[-1], where], [values[-1]] * 2, color=style["color"], ls=":")
            axis.plot(where, values[-1], "x", color=style["color"], ms=11, mew=2.5, zorder=5)
        else:  # near the bottom of the axis, at its epoch
            bottom = blended_transform_factory(axis.transData, axis.transAxes)
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


def _curve_handle(outcome: str, label: str) -> Line2D:
    """The legend entry of an outcome's curves: its line, and what its mark means."""
    style = STYLES[outcome]
    marker = {scoring.FINISHED: None, scoring.DIVERGED: "x"}.get(outcome, style["marker"])
    if outcome == scoring.PRUNED:
        label += ": ▼ where stopped"
    elif outcome == scoring.DIVERGED:
        label += ": × at the epoch it diverged in"
    elif outcome != scoring.FINISHED:
        label += ": marker at its last epoch"
    return Line2D([], [], color=style["color"], ls=style["ls"], marker=marker, label=label)


def _draw_best(axis, best: Trial, mode: str, metric: str) -> Line2D:
    """The best trial bold, a star at its best epoch; its legend entry."""
    axis.plot(*zip(*best.history, strict=True), color="black", lw=2.6, zorder=6)
    pick = max if mode == "max" else min
    at, value = pick(((e, v) for e, v in best.history if math.isfinite(v)), key=lambda ev: ev[1])
    axis.plot(at, value, "*", color="gold", ms=18, mec="black", zorder=7)
    return Line2D(
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
