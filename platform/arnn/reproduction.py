"""Filling the paper's tables: for each trainable cell, a search sweep over the row's spec,
the best trial (arnn.scoring's rule), then one final run per seed of its configuration.

Everything is a sweep (so it runs on a laptop or a cluster alike) and everything is found
again in MLflow by its tags: MLflow alone says how far a cell is, so a second invocation
finishes whatever is partial. A search that failed or was interrupted is resumed; missing
final seeds are added (asking for 5 seeds after 3 runs the 2 missing).

Final seeds are arnn.scoring.final_seeds: never a search trial's seed, so that no
"independent" final run replays the trial that was selected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from arnn import record, scoring
from arnn.budgets import Budget
from arnn.errors import UsageError
from arnn.models import model_entry
from arnn.published import PublishedRow
from arnn.results import cell_runs, final_outcomes_by_seed, tag_column, trial_records
from arnn.sweep.driver import sweep, sweep_state_exists
from arnn.sweep.spec import Spec, load_spec, param_values, parse_spec
from arnn.tracking import runs_frame


@dataclass(frozen=True)
class Cell:
    table: int
    row: PublishedRow
    task: str

    @property
    def name(self) -> str:
        return f"table{self.table}_{self.task}_{self.row.model}"

    def tags(self, stage: str, budget: Budget) -> dict[str, str]:
        return {
            record.STAGE: stage,
            record.CELL_TASK: self.task,
            record.CELL_MODEL: self.row.model,
            record.BUDGET: budget.name,
            record.TABLE: str(self.table),
        }


def search_spec(base: Spec, budget: Budget, gpus: bool) -> Spec:
    raw = base.model_dump(mode="json")
    fixed = dict(raw["fixed"])
    if budget.subset is not None:
        fixed["subset"] = budget.subset
        fixed["val_size"] = min(fixed.get("val_size", 5000), budget.subset)
    if budget.epochs is not None:
        fixed["epochs"] = budget.epochs
    raw["fixed"] = fixed
    if budget.samples is not None:
        raw["num_samples"] = budget.samples
    if budget.epochs is not None:
        raw["scheduler"] = (
            {"type": "none"}
            if budget.epochs < 3
            else {"type": "asha", "grace_period": 1, "reduction_factor": 3}
        )
    if budget.cpu_only or not gpus:
        raw["resources"] = {"cpu": 1, "gpu": 0}
        raw["max_concurrent"] = min(raw["max_concurrent"], 2)
    return parse_spec(raw, source=f"{base.name} ({budget.name} budget)")


def search_seeds(search: Spec) -> set[int]:
    """Every seed a search trial can run with."""
    if "seed" in search.params:
        return {int(v) for v in param_values(search.params["seed"])}
    return {int(search.base_config().seed)}


def final_spec(search: Spec, sampled: dict, seeds: list[int], budget: Budget) -> Spec:
    """The chosen configuration, fixed, trained once per seed in `seeds`."""
    overlap = search_seeds(search) & set(seeds)
    if overlap:
        raise UsageError(
            f"{search.name}: final seeds {sorted(overlap)} were search seeds too; final runs "
            "must be independent of the search"
        )
    raw = search.model_dump(mode="json")
    chosen = dict(sampled)
    model = chosen.pop("model", raw["model"])
    if chosen.pop("gated", False):
        model = model_entry(model).gated_variant
    fixed = {**raw["fixed"], **chosen}
    fixed.pop("seed", None)
    if budget.final_epochs is not None:
        fixed["epochs"] = budget.final_epochs
    raw.update(
        name=f"{search.name}_final",
        model=model,
        fixed=fixed,
        params={"seed": {"type": "categorical", "choices": list(seeds)}},
        points_to_evaluate=[],  # the search's; the final runs are a grid of seeds
        sampler={"type": "grid", "seed": 0},
        scheduler={"type": "none"},
        num_samples=len(seeds),
    )
    return parse_spec(raw, source=f"{search.name} (final runs)")


def run_cell(
    cell: Cell,
    *,
    spec_dir: Path,
    budget: Budget,
    seeds: int,
    gpus: bool,
    tracking_uri: str,
    experiment: str,
    sweep_options: dict,
) -> str:
    """Search and final runs of one cell, going on from whatever MLflow already holds."""
    frame = runs_frame(tracking_uri, experiment)
    wanted = scoring.final_seeds(seeds)
    done = scoring.count_seeds(
        final_outcomes_by_seed(_mine(frame, cell, budget, record.FINAL_STAGE)), wanted
    )
    if done.complete:
        return "complete already"
    search = search_spec(load_spec(spec_dir / f"{cell.name}.yaml"), budget, gpus)
    common = dict(tracking_uri=tracking_uri, experiment=experiment, **sweep_options)
    search_name = f"{cell.name}-{budget.name}-search"
    if not _sweep_finished(frame, search_name):
        sweep(
            search,
            name=search_name,
            resume=_resumable(frame, search_name, common),
            tags=cell.tags(record.SEARCH_STAGE, budget),
            **common,
        )
        frame = runs_frame(tracking_uri, experiment)
    trials = _mine(frame, cell, budget, record.SEARCH_STAGE)
    trials = trials[tag_column(trials, record.KIND) == record.TRIAL_RUN]
    best = scoring.best_trial(trial_records(trials), search.mode)
    if best is None:
        return "no search trial finished (all pruned, diverged or failed): no final runs"
    missing = list(done.missing)
    final_name = f"{cell.name}-{budget.name}-final-{missing[0]}-{missing[-1]}"
    sweep(
        final_spec(search, best.sampled, missing, budget),
        name=final_name,
        resume=_resumable(frame, final_name, common),
        tags={**cell.tags(record.FINAL_STAGE, budget), record.FINAL_SEEDS: json.dumps(missing)},
        score_test=True,
        trial_kind=record.FINAL_RUN,
        **common,
    )
    chosen = json.dumps(best.sampled, sort_keys=True)
    return f"done with {chosen} (final seeds {missing[0]}..{missing[-1]})"


def _mine(frame, cell: Cell, budget: Budget, stage: str):
    return cell_runs(frame, cell.task, cell.row.model, stage=stage, budget=budget.name)


def _sweep_runs(frame, name: str):
    if frame.empty or record.column(record.SWEEP) not in frame:
        return frame.iloc[0:0]
    return frame[
        (frame[record.column(record.SWEEP)] == name)
        & (frame[record.column(record.KIND)] == record.SWEEP_RUN)
    ]


def _resumable(frame, name: str, common: dict) -> bool:
    """Whether to resume sweep `name`: MLflow holds its run (it started) and Ray its state.
    A sweep stopped before Ray saved anything starts again from nothing."""
    if _sweep_runs(frame, name).empty:
        return False
    return sweep_state_exists(name, common.get("storage_path"))


def _sweep_finished(frame, name: str) -> bool:
    """A sweep ran to its end (not interrupted, not failed), as its MLflow run says."""
    runs = _sweep_runs(frame, name)
    if runs.empty:
        return False
    # Sweeps from before arnn.status was set on a sweep's run ended FINISHED or FAILED.
    label = tag_column(runs, record.STATUS)
    ran_out = label.isna() | (label == scoring.FINISHED)
    return bool(((runs["status"] == "FINISHED") & ran_out).any())
