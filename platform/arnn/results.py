"""Our results out of MLflow, set beside the published ones: the tables of reproduce/table.py.

A cell is (task, model). Its numbers are the test accuracies of the runs tagged
`arnn.stage=final` (one per seed, the configuration chosen by the search), FINISHED.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from arnn import record, scoring, tables
from arnn.budgets import BUDGETS
from arnn.published import PublishedRow, PublishedTable

SELECTION_RULE = (
    "selection: among the search trials that finished (not pruned, interrupted, diverged or "
    "failed), the "
    "one whose best epoch scored highest on validation (the split below); its configuration "
    "trained once per final seed (seeds 1000 and up, "
    "none a search seed); test accuracy of each seed's best-validation weights, mean ± std "
    "over the seeds that finished (n = finished/asked; diverged seeds counted beside it)"
)


# The protocol under a table, as each cell's final runs recorded it: the task's options
# from the tag arnn.task_options (every version has it), the split from the params (with
# the flat names that runs logged before the configuration had sections).
PROTOCOL = {
    "pMNIST permutation seed": ("task option", "perm_seed"),
    "noise mode": ("task option", "noise"),
    "validation examples held out of the training set": ("param", "data.val_size", "val_size"),
    "training subset": ("param", "data.subset", "subset"),
}


def trial_records(frame: pd.DataFrame) -> list[scoring.TrialRecord]:
    """Sweep trials as scoring sees them, from their MLflow runs (one row each): outcome
    from the tag arnn.status, score from the metric trial_score that each trial logs
    (trials from before it was logged: their best_val_accuracy, the same rule's value for
    the val_accuracy metric that every table spec selects on)."""
    if frame.empty:
        return []
    rows = frame.to_dict("records")
    return [
        scoring.TrialRecord(
            trial=str(row.get(record.column(record.TRIAL_ID)) or row["run_id"]),
            outcome=str(row.get(record.column(record.STATUS)) or scoring.FAILED),
            score=_first_number(
                row.get("metrics.trial_score"), row.get("metrics.best_val_accuracy")
            ),
            run_id=row["run_id"],
            epochs=_whole(_first_number(row.get("metrics.epochs"))),
            sampled=json.loads(row.get(record.column(record.SAMPLED)) or "{}"),
        )
        for row in rows
    ]


def number_or_none(value):
    """`value`, or None where MLflow's frame holds NaN or None (a run without it)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def _first_number(*values):
    """The first value that is a number."""
    return next((v for v in map(number_or_none, values) if v is not None), None)


def _whole(value) -> int | None:
    return None if value is None else int(value)


@dataclass
class CellResult:
    published: float | None
    n: int = 0  # seeds that finished: the mean and std are over these
    asked: int = 0  # seeds that final runs were started for
    diverged: int = 0
    mean: float | None = None
    std: float | None = None
    units: str | None = None
    parameters: str | None = None
    budget: str | None = None
    searched: int = 0
    seconds: float = 0.0
    protocol: dict[str, str] = field(default_factory=dict)  # PROTOCOL's labels -> values

    @property
    def difference(self) -> float | None:
        if self.mean is None or self.published is None:
            return None
        return self.mean - self.published


@dataclass
class Row:
    published: PublishedRow
    cells: dict[str, CellResult] = field(default_factory=dict)


def tag_column(frame: pd.DataFrame, name: str) -> pd.Series:
    """Tag `name` of every run in a runs frame (arnn.tracking.runs_frame), as a column:
    None where a run lacks it, all None where every run does (the frame has no column
    for it then)."""
    column = f"tags.{name}"
    return frame[column] if column in frame else pd.Series([None] * len(frame), index=frame.index)


def cell_runs(
    frame: pd.DataFrame,
    task: str,
    model: str,
    *,
    stage: str | None = None,
    budget: str | None = None,
) -> pd.DataFrame:
    """The runs of one table cell (tags arnn.cell_task and arnn.cell_model), optionally of
    one stage (search or final) and one budget; empty when the store has none."""
    keep = (tag_column(frame, record.CELL_TASK) == task) & (
        tag_column(frame, record.CELL_MODEL) == model
    )
    if stage is not None:
        keep &= tag_column(frame, record.STAGE) == stage
    if budget is not None:
        keep &= tag_column(frame, record.BUDGET) == budget
    return frame[keep]


def build_rows(
    table: PublishedTable,
    frame: pd.DataFrame,
    budget: str | None = None,
    spec_dir: Path | None = None,
) -> list[Row]:
    """Every row of `table` with our cells: the final runs' numbers where `frame` has them;
    the units and exact parameter count of the model each cell's spec (in `spec_dir`)
    trains even where it has none."""
    rows = []
    for published in table.rows:
        row = Row(published)
        for task in table.tasks:
            cell = CellResult(published=published.accuracy.get(task))
            spec = spec_dir / f"table{table.id}_{task}_{published.model}.yaml" if spec_dir else None
            if published.trainable and spec is not None and spec.exists():
                cell.units, cell.parameters = planned_size(spec)
            if published.trainable and not frame.empty:
                _fill(cell, frame, task, published.model, budget)
            row.cells[task] = cell
        rows.append(row)
    return rows


def planned_size(spec_path: Path) -> tuple[str, str]:
    """(units, exact parameter count) of the model that a cell's spec trains, as `arnn
    models` counts it: its fixed settings, any sampled one at its default."""
    from arnn.models import count_parameters
    from arnn.sweep.spec import load_spec
    from arnn.tasks import create_task
    from arnn.train import build_model

    config = load_spec(spec_path).base_config()
    task = create_task(config.task.name, config.task.options)
    return str(config.model.hidden), str(count_parameters(build_model(config, task, "eager")))


def _final_trials(finals: pd.DataFrame) -> pd.DataFrame:
    """A cell's final trial runs on final seeds: seeds below FINAL_SEED_BASE (final runs
    from before final seeds were kept apart from the search's) are left out."""
    if finals.empty or "params.seed" not in finals:
        return finals.iloc[0:0]
    # kind "final" (older stores: "trial", with arnn.stage=final)
    kinds = tag_column(finals, record.KIND).isin((record.FINAL_RUN, record.TRIAL_RUN))
    trials = finals[kinds & finals["params.seed"].notna()]
    return trials[trials["params.seed"].astype(int) >= scoring.FINAL_SEED_BASE]


def final_outcomes_by_seed(finals: pd.DataFrame) -> dict[int, list[str]]:
    """Each final seed's outcomes (arnn.status), for arnn.scoring.count_seeds."""
    outcomes: dict[int, list[str]] = {}
    trials = _final_trials(finals)
    if trials.empty:  # an empty store's frame has no columns at all
        return outcomes
    for seed, status in zip(trials["params.seed"], tag_column(trials, record.STATUS), strict=True):
        outcomes.setdefault(int(seed), []).append(str(status))
    return outcomes


def _asked_seeds(finals: pd.DataFrame, by_seed: dict[int, list[str]]) -> list[int]:
    """Every seed a final sweep of the cell was asked for, run or not."""
    asked = set(by_seed)
    sweeps = finals[tag_column(finals, record.KIND) == record.SWEEP_RUN]
    for listed in tag_column(sweeps, record.FINAL_SEEDS).dropna():
        asked.update(int(seed) for seed in json.loads(listed))
    return sorted(asked)


def _fill(cell: CellResult, frame: pd.DataFrame, task: str, model: str, budget: str | None) -> None:
    """Mean ± std of the test accuracy over the final seeds that finished; the seeds asked
    and those that diverged beside it (arnn.scoring.count_seeds decides, as for run.py)."""
    mine = cell_runs(frame, task, model)
    finals = mine[tag_column(mine, record.STAGE) == record.FINAL_STAGE]
    recorded = set(tag_column(finals, record.BUDGET))
    budgets = [b for b in BUDGETS if b in recorded]  # the largest wins
    if budget is not None:
        budgets = [b for b in budgets if b == budget]
    if not budgets:
        return
    cell.budget = budgets[-1]
    chosen = finals[tag_column(finals, record.BUDGET) == cell.budget]
    by_seed = final_outcomes_by_seed(chosen)
    count = scoring.count_seeds(by_seed, _asked_seeds(chosen, by_seed))
    cell.asked, cell.diverged = count.asked, count.diverged
    trials = _final_trials(chosen)
    if not trials.empty:
        _fill_mean(cell, trials)
    same_budget = mine[tag_column(mine, record.BUDGET) == cell.budget]
    searched = same_budget[
        (tag_column(same_budget, record.STAGE) == record.SEARCH_STAGE)
        & (tag_column(same_budget, record.KIND) == record.TRIAL_RUN)
    ]
    cell.searched = len(searched)
    if "metrics.train_seconds" in same_budget:
        cell.seconds = float(same_budget["metrics.train_seconds"].fillna(0).sum())


def _fill_mean(cell: CellResult, trials: pd.DataFrame) -> None:
    """Mean ± std of the test accuracy over the seeds that finished (a seed run again
    after a failure counts its latest finished run)."""
    finished = trials[
        (trials["status"] == "FINISHED") & (tag_column(trials, record.STATUS) == scoring.FINISHED)
    ]
    finished = finished.sort_values("start_time").drop_duplicates("params.seed", keep="last")
    accuracies = 100 * finished.get("metrics.test_accuracy", pd.Series(dtype=float)).dropna()
    cell.n = len(accuracies)
    if cell.n:
        cell.mean = float(accuracies.mean())
        cell.std = float(accuracies.std(ddof=1)) if cell.n > 1 else 0.0
        cell.units = str(tag_column(finished, record.UNITS).iloc[0])
        cell.parameters = str(tag_column(finished, record.PARAMETERS).iloc[0])
        cell.protocol = _protocol(finished)


def _protocol(runs: pd.DataFrame) -> dict[str, str]:
    """PROTOCOL's values in these runs (a list where they differ); an unset subset is the
    full data."""
    options = [json.loads(t) for t in tag_column(runs, record.TASK_OPTIONS).dropna()]
    found = {}
    for label, (kind, *names) in PROTOCOL.items():
        if kind == "task option":
            seen = {str(o[names[0]]) for o in options if names[0] in o}
        else:
            columns = [f"params.{n}" for n in names if f"params.{n}" in runs]
            seen = {str(v) for c in columns for v in runs[c].dropna()}
        values = ["none (all of it)" if v == "" else v for v in sorted(seen)]
        if values:
            found[label] = ", ".join(values)
    return found


def _pct(value: float | None) -> str:
    return "—" if number_or_none(value) is None else f"{value:.1f}"


def render(table: PublishedTable, rows: list[Row], fmt: str, fill_command: str) -> str:
    """The table laid out as the paper's, one group of columns per task."""
    header = ["method"]
    for heading in table.tasks.values():
        header += [f"{heading} published", f"{heading} ours (mean ± std, n)", f"{heading} Δ"]
    header += ["units (ours)", "params (paper)", "params (ours)"]
    body = []
    for row in rows:
        line = [row.published.method]
        for cell in row.cells.values():
            if not row.published.trainable:
                ours, diff = "cited", ""
            elif cell.mean is None and not cell.asked:
                ours, diff = "no runs yet", ""
            elif cell.mean is None:
                ours = f"none finished (n=0/{cell.asked}, {cell.diverged} diverged, {cell.budget})"
                diff = ""
            else:
                ours = (
                    f"{cell.mean:.1f} ± {cell.std:.1f} "
                    f"(n={cell.n}/{cell.asked}, {cell.diverged} diverged, {cell.budget})"
                )
                diff = "" if cell.difference is None else f"{cell.difference:+.1f}"
            line += [_pct(cell.published), ours, diff]
        units = _distinct(c.units for c in row.cells.values()) or str(row.published.units)
        params = _distinct(c.parameters for c in row.cells.values())
        line += [units, row.published.params or "—", params or "—"]
        body.append(line)

    frame = pd.DataFrame(body, columns=header)
    text = {"csv": tables.csv, "latex": tables.latex, "markdown": tables.markdown}[fmt](frame)
    return f"{table.title}\n\n{text}\n" + _footer(table, rows, fill_command)


def _distinct(values) -> str:
    """The values that are set, each once, in order: '9674', or '68234 / 80138' where a
    row's tasks give its model other sizes (another input width)."""
    return " / ".join(dict.fromkeys(v for v in values if v))


def _footer(table: PublishedTable, rows: list[Row], fill_command: str) -> str:
    cells = [
        (row, task, cell)
        for row in rows
        if row.published.trainable
        for task, cell in row.cells.items()
    ]
    missing = [f"{row.published.method} / {task}" for row, task, cell in cells if cell.mean is None]
    searched = ", ".join(
        f"{row.published.model}/{task} {cell.searched}"
        for row, task, cell in cells
        if cell.mean is not None
    )
    seconds = sum(cell.seconds for _, _, cell in cells)
    lines = [f"source: {table.source}", SELECTION_RULE]
    lines += _protocol_lines([(f"{row.published.model}/{task}", cell) for row, task, cell in cells])
    if searched:
        lines.append(f"trials searched per cell: {searched}")
    lines.append(
        f"total compute (training time of every search and final run): "
        f"{seconds / 3600:.2f} h ({seconds:.0f} s)"
    )
    if missing:
        lines.append(f"no finished runs yet for: {'; '.join(missing)}")
        lines.append(f"fill them with: {fill_command}")
    return "\n".join(lines) + "\n"


def _protocol_lines(cells: list[tuple[str, CellResult]]) -> list[str]:
    """'noise mode: fixed' where every cell with runs agrees, else each value with its cells."""
    lines = []
    for label in PROTOCOL:
        where: dict[str, list[str]] = {}
        for name, cell in cells:
            if label in cell.protocol:
                where.setdefault(cell.protocol[label], []).append(name)
        if len(where) == 1:
            lines.append(f"{label}: {next(iter(where))}")
        elif where:
            parts = "; ".join(f"{value} ({', '.join(names)})" for value, names in where.items())
            lines.append(f"{label}: {parts}")
    return lines


def plot(table: PublishedTable, rows: list[Row], path: Path) -> None:
    """Published against ours per trainable cell, ours with ±1 std error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, published, ours, spread = [], [], [], []
    for row in rows:
        if not row.published.trainable:
            continue
        for task, cell in row.cells.items():
            labels.append(f"{row.published.method}\n{table.tasks[task]}")
            published.append(math.nan if cell.published is None else cell.published)
            ours.append(math.nan if cell.mean is None else cell.mean)
            spread.append(0.0 if cell.std is None else cell.std)
    positions = range(len(labels))
    figure, axis = plt.subplots(figsize=(max(6, 1.1 * len(labels)), 4.5))
    axis.bar([p - 0.2 for p in positions], published, width=0.4, label="published")
    axis.bar([p + 0.2 for p in positions], ours, width=0.4, yerr=spread, capsize=3, label="ours")
    axis.set_xticks(list(positions), labels, rotation=45, ha="right", fontsize=7)
    axis.set_ylabel("test accuracy (%)")
    axis.set_title(table.title)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
