"""Filling the paper's tables: for each trainable cell, a search sweep over the row's spec,
the best trial by validation accuracy, then one final run per seed of its configuration.

Everything is a sweep (so it runs on a laptop or a cluster alike) and everything is found
again in MLflow by its tags, so a second invocation skips what is complete.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from arnn.budgets import Budget
from arnn.models import model_entry
from arnn.published import PublishedRow
from arnn.results import cell_runs, runs_frame
from arnn.sweep.driver import sweep
from arnn.sweep.spec import Spec, load_spec, parse_spec


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
            "arnn.stage": stage,
            "arnn.cell_task": self.task,
            "arnn.cell_model": self.row.model,
            "arnn.budget": budget.name,
            "arnn.table": str(self.table),
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


def final_spec(search: Spec, sampled: dict, seeds: int, budget: Budget) -> Spec:
    """The chosen configuration, fixed, trained once per seed 0 .. seeds-1."""
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
        params={"seed": {"type": "categorical", "choices": list(range(seeds))}},
        sampler={"type": "grid", "seed": 0},
        scheduler={"type": "none"},
        num_samples=seeds,
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
    """Search and final runs of one cell, skipping what MLflow already holds."""
    frame = runs_frame(tracking_uri, experiment)
    if _finished(frame, cell, budget, "final", "trial") >= seeds:
        return "complete already"
    search = search_spec(load_spec(spec_dir / f"{cell.name}.yaml"), budget, gpus)
    common = dict(tracking_uri=tracking_uri, experiment=experiment, **sweep_options)
    if not _finished(frame, cell, budget, "search", "sweep"):
        sweep(
            search,
            name=f"{cell.name}-{budget.name}-search",
            tags=cell.tags("search", budget),
            **common,
        )
        frame = runs_frame(tracking_uri, experiment)
    sampled = _best_sampled(frame, cell, budget)
    if sampled is None:
        return "no search trial finished (all diverged or failed): no final runs"
    sweep(
        final_spec(search, sampled, seeds, budget),
        name=f"{cell.name}-{budget.name}-final",
        tags=cell.tags("final", budget),
        **common,
    )
    return f"done with {json.dumps(sampled, sort_keys=True)}"


def _mine(frame, cell: Cell, budget: Budget, stage: str):
    return cell_runs(frame, cell.task, cell.row.model, stage=stage, budget=budget.name)


def _finished(frame, cell: Cell, budget: Budget, stage: str, kind: str) -> int:
    runs = _mine(frame, cell, budget, stage)
    if runs.empty:
        return 0
    done = runs[(runs["tags.arnn.kind"] == kind) & (runs["status"] == "FINISHED")]
    if kind == "trial":
        done = done[done["tags.arnn.status"] == "finished"]
    return len(done)


def _best_sampled(frame, cell: Cell, budget: Budget) -> dict | None:
    """The selection rule: the finished search trial with the highest best_val_accuracy."""
    trials = _mine(frame, cell, budget, "search")
    if trials.empty or "metrics.best_val_accuracy" not in trials:
        return None
    trials = trials[
        (trials["tags.arnn.kind"] == "trial")
        & (trials["tags.arnn.status"] == "finished")
        & trials["metrics.best_val_accuracy"].notna()
    ]
    if trials.empty:
        return None
    best = trials.sort_values("metrics.best_val_accuracy", ascending=False).iloc[0]
    return json.loads(best["tags.arnn.sampled"])
