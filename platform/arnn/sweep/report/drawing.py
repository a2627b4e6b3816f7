"""What the report's figures share: their size in dots, how each outcome is drawn and
listed in a legend, the units of each metric, and a figure that says in words why there is
nothing to draw."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from arnn import scoring
from arnn.sweep.report.reading import OUTCOMES, RUNNING

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


def new_figure(width: float, height: float) -> Figure:
    """A figure of its own (not pyplot's), drawn by Agg."""
    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def save(figure: Figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)


def message_figure(path: Path, title: str, message: str) -> None:
    """A figure that says in words why there is nothing to draw."""
    figure = new_figure(8, 3.5)
    axis = figure.add_subplot()
    axis.set_axis_off()
    axis.set_title(title, fontsize=12)
    axis.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=11)
    save(figure, path)


def outcome_handles(seen: list[str], handle: Callable[[str, str], Line2D]) -> list[Line2D]:
    """A legend entry for each outcome in `seen` (one item per trial drawn), in the order
    of OUTCOMES: `handle(outcome, label)`, its label naming the outcome and its count."""
    return [handle(o, f"{LABELS[o]} ({seen.count(o)})") for o in OUTCOMES if o in seen]


def metric_label(metric: str) -> str:
    unit = METRIC_UNITS.get(metric)
    return f"{metric} ({unit})" if unit else metric
