"""map.png: the outcome map over two parameters (Spec.map_params), each trial a point
coloured by its score, diverged and failed trials marked apart: where training is stable."""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.colors import Normalize
from matplotlib.lines import Line2D

from arnn import scoring
from arnn.sweep.names import short
from arnn.sweep.report.drawing import (
    METRIC_UNITS,
    STYLES,
    message_figure,
    new_figure,
    outcome_handles,
    save,
)
from arnn.sweep.report.reading import OUTCOMES, Sweep, Trial
from arnn.sweep.spec import BoolParam, CategoricalParam, is_numeric


@dataclass(frozen=True)
class MapAxis:
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


def plot_outcome_map(state: Sweep, path: Path) -> None:
    spec, metric = state.spec, state.metric
    pair = spec.map_params()
    if pair is None:
        _say_no_map(state, path)
        return
    x_axis, y_axis = (MapAxis(name, spec.params[name]) for name in pair)
    placed = [t for t in state.trials if set(pair) <= set(t.record.sampled)]
    xs = x_axis.positions([t.record.sampled[x_axis.name] for t in placed])
    ys = y_axis.positions([t.record.sampled[y_axis.name] for t in placed])
    notes = [
        f"{a.name} has choices: trials spread around each" for a in (x_axis, y_axis) if a.choices
    ]
    if left_out := len(state.trials) - len(placed):
        notes.append(
            f"{left_out} of {len(state.trials)} trials left out: they did not sample "
            f"{x_axis.name} and {y_axis.name} (conditional parameters)"
        )
        state.notes.append(f"map: {notes[-1]}")

    figure = new_figure(9, 6.8)
    axis = figure.add_subplot()
    norm = _score_norm(placed)
    mappable = None
    for outcome in OUTCOMES:
        index = [i for i, t in enumerate(placed) if t.outcome == outcome]
        if index:
            points = ([xs[i] for i in index], [ys[i] for i in index])
            scores = [placed[i].record.score for i in index]
            drawn = _draw_outcome(axis, outcome, points, scores, norm, spec.mode)
            mappable = mappable if drawn is None else drawn
    handles = outcome_handles([t.outcome for t in placed], _map_handle)
    best = next((i for i, t in enumerate(placed) if state.best and t.record is state.best), None)
    if best is not None:
        handles.append(_draw_best(axis, (xs[best], ys[best]), placed[best], metric))
    if mappable is not None:
        bar = figure.colorbar(mappable, ax=axis)
        bar.set_label(
            f"score: best {metric} over the trial's epochs ({METRIC_UNITS.get(metric, '')})"
        )
    x_axis.lay_out(axis, "x")
    y_axis.lay_out(axis, "y")
    subtitle = "\n".join(textwrap.fill(line, 95) for line in [state.counts(), *notes])
    over = f"{x_axis.name} × {y_axis.name}"
    axis.set_title(f"sweep {state.name}: outcome map over {over}\n{subtitle}", fontsize=10.5)
    axis.grid(alpha=0.3)
    if handles:
        axis.legend(handles=handles, fontsize=8.5, loc="best", framealpha=0.9)
    save(figure, path)


def _say_no_map(state: Sweep, path: Path) -> None:
    searched = state.spec.params
    numeric = [n for n, p in searched.items() if is_numeric(p)]
    message_figure(
        path,
        f"sweep {state.name}: outcome map",
        "No outcome map: this sweep does not search two numeric parameters\n"
        f"(numeric parameters searched: {', '.join(numeric) or 'none'}; "
        f"all searched: {', '.join(searched) or 'none'}).",
    )


def _score_norm(placed: list[Trial]) -> Normalize | None:
    """The colour scale of the scores on the map (None where none has one); widened
    around a single score."""
    scores = [t.record.score for t in placed if t.record.score is not None]
    scores = [s for s in scores if math.isfinite(s)]
    if not scores:
        return None
    low, high = min(scores), max(scores)
    if low == high:
        return Normalize(low - 0.5 * abs(low or 1), high + 0.5 * abs(high or 1))
    return Normalize(low, high)


def _draw_outcome(axis, outcome: str, points, scores: list, norm, mode: str):
    """The trials of one outcome: diverged and failed ones by their marks, the others
    coloured by score (grey without one). The scatter that carries the colour scale, if
    any."""
    style, (px, py) = STYLES[outcome], points
    if outcome == scoring.DIVERGED:
        axis.scatter(px, py, marker="X", s=110, c=style["color"], edgecolors="black", lw=0.6)
        return None
    if outcome == scoring.FAILED:
        axis.scatter(px, py, marker="s", s=70, facecolors="none", edgecolors="black", lw=1.4)
        return None
    scored = [i for i, v in enumerate(scores) if v is not None and math.isfinite(v)]
    unscored = [i for i in range(len(scores)) if i not in scored]
    mappable = None
    if scored and norm is not None:
        cmap = "viridis" if mode == "max" else "viridis_r"
        size = 85 if outcome == scoring.FINISHED else 70
        colours = [scores[i] for i in scored]
        mappable = _scatter(
            axis, px, py, scored, style["marker"], size, c=colours, cmap=cmap, norm=norm
        )
    if unscored:
        _scatter(axis, px, py, unscored, style["marker"], 70, c="lightgrey")
    return mappable


def _scatter(axis, px: list, py: list, chosen: list[int], marker: str, size: float, **colour):
    """The points `chosen` of px, py, edged in black, above the grid."""
    return axis.scatter(
        [px[i] for i in chosen],
        [py[i] for i in chosen],
        marker=marker,
        s=size,
        edgecolors="black",
        lw=0.6,
        zorder=3,
        **colour,
    )


def _map_handle(outcome: str, label: str) -> Line2D:
    """The legend entry of an outcome's points: its mark, and whether colour is its score."""
    style = STYLES[outcome]
    if outcome == scoring.DIVERGED:
        look = {"marker": "X", "ms": 10, "mfc": style["color"]}
    elif outcome == scoring.FAILED:
        look = {"marker": "s", "ms": 8, "mfc": "none", "mew": 1.4}
    else:
        look = {"marker": style["marker"], "ms": 9, "mfc": "#9fc9a0"}
        label += ", colour = score"
    return Line2D([], [], ls="", mec="black", label=label, **look)


def _draw_best(axis, point: tuple[float, float], best: Trial, metric: str) -> Line2D:
    """A red ring around the best trial; its legend entry."""
    axis.scatter(*point, marker="o", s=380, facecolors="none", edgecolors="red", lw=2)
    label = f"best: {best.name or best.record.trial} ({metric} {best.record.score:.4g})"
    return Line2D([], [], ls="", marker="o", ms=16, mfc="none", mec="red", mew=2, label=label)
