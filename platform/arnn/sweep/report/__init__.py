"""Every sweep's report, read back from MLflow alone (no Ray): five files.

- curves.png: the spec's metric of every trial over its epochs, by how the trial ended
  (`curves`);
- map.png: the outcome map over two parameters (Spec.map_params), each trial a point
  coloured by its score, diverged and failed trials marked apart: where training is stable
  (`outcome_map`);
- importance.png, importance.json: hyperparameter importances, Optuna's own evaluator and
  figure on the sweep's study as arnn.sweep.study keeps it (`importance`);
- trials.csv: one row per trial, its sampled values, outcome, score, epochs and seconds
  (`trials_csv`).

`write_report` logs them at the root of the sweep's MLflow run, or writes them into a folder.
What they show is read from MLflow once (`reading`).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from arnn.sweep.report.curves import plot_curves
from arnn.sweep.report.importance import write_importance
from arnn.sweep.report.outcome_map import plot_outcome_map
from arnn.sweep.report.reading import read_sweep
from arnn.sweep.report.trials_csv import write_trials_csv
from arnn.tracking import connect

CURVES, MAP, IMPORTANCE_PNG, IMPORTANCE_JSON, TRIALS_CSV = (
    "curves.png",
    "map.png",
    "importance.png",
    "importance.json",
    "trials.csv",
)
FILES = (CURVES, MAP, IMPORTANCE_PNG, IMPORTANCE_JSON, TRIALS_CSV)

__all__ = ["FILES", "ReportFiles", "write_report"]


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


def write_report(
    tracking_uri: str, experiment: str, sweep: str, out: Path | str | None = None
) -> ReportFiles:
    """Write sweep `sweep`'s report (its name, the tag arnn.sweep, or its run id): with `out`
    None, as artifacts at the root of the sweep's MLflow run; else into folder `out`, logging
    nothing. An unknown sweep is one UsageError line naming the sweeps there are."""
    client = connect(tracking_uri)
    state = read_sweep(client, tracking_uri, experiment, sweep)
    with tempfile.TemporaryDirectory(prefix="arnn-report-") as scratch:
        folder = Path(scratch) if out is None else Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        write_trials_csv(state, folder / TRIALS_CSV)
        plot_curves(state, folder / CURVES)
        plot_outcome_map(state, folder / MAP)
        write_importance(state, folder / IMPORTANCE_JSON, folder / IMPORTANCE_PNG)
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
