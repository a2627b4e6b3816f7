"""The schema of what the platform writes to MLflow: every tag and metric name, the kinds
of run and the outcomes of a trial, in one place (as MLflow keeps its own system tags in
mlflow/utils/mlflow_tags.py). Writers and readers name them from here, never as literals.

A run's kind (`KIND`) says what it is:
- `train`: one `arnn train` run;
- `sweep`: a sweep's parent run (its spec, counts, best trial and report);
- `trial`: a search trial, child of its sweep;
- `final`: a final seed of a reproduction's chosen configuration, child of its sweep;
- `figure`: a figure's run (reproduce/figure1.py).
"""

from __future__ import annotations

from typing import Final

# --- What every training run (train, trial, final) records ------------------------------
STATUS: Final = "arnn.status"  # an outcome (arnn.scoring), or "running"
KIND: Final = "arnn.kind"  # TRAIN_RUN, SWEEP_RUN, TRIAL_RUN, FINAL_RUN or FIGURE_RUN
TASK: Final = "arnn.task"
TASK_OPTIONS: Final = "arnn.task_options"  # JSON, every option with its default
MODEL: Final = "arnn.model"
UNITS: Final = "arnn.units"
PARAMETERS: Final = "arnn.parameters"  # the exact count
DEVICE: Final = "arnn.device"
KERNEL: Final = "arnn.kernel"  # the path the recurrence took: eager or fused
SEED: Final = "arnn.seed"
DIVERGED_AT: Final = "arnn.diverged_at"  # what ended a diverged run, and when
ERROR: Final = "arnn.error"  # a failed trial's error, one line

# --- Provenance (arnn.provenance), on every run ------------------------------------------
GIT_COMMIT: Final = "arnn.git_commit"
GIT_DIRTY: Final = "arnn.git_dirty"  # "true" when a tracked file differs from the commit
GIT_COMMITS: Final = "arnn.git_commits"  # every commit that computed part of a resumed run
VERSION_PREFIX: Final = "arnn.version."  # + arnn, torch, ray, optuna, mlflow

# --- A sweep's trials ---------------------------------------------------------------------
SWEEP: Final = "arnn.sweep"  # the sweep's name, on each of its trials
TRIAL_ID: Final = "arnn.trial_id"  # Ray Tune's id: how a retried trial finds its run
TRIAL_NUMBER: Final = "arnn.trial_number"  # the order the searcher asked for it (t07)
SAMPLED: Final = "arnn.sampled"  # JSON: the values Optuna sampled
ATTEMPTS: Final = "arnn.attempts"
NODE_ID: Final = "arnn.node_id"  # where the latest attempt ran
NODE_IP: Final = "arnn.node_ip"
RESUMED_FROM_EPOCH: Final = "arnn.resumed_from_epoch"

# --- A sweep's own run --------------------------------------------------------------------
SPEC: Final = "arnn.spec"  # the spec as JSON, every default filled in
SPEC_HASH: Final = "arnn.spec_hash"
BEST_TRIAL: Final = "arnn.best_trial"  # the best trial's name, as a person reads it (t07)
BEST_TRIAL_ID: Final = "arnn.best_trial_id"  # its Ray id
BEST_RUN_ID: Final = "arnn.best_run_id"  # its MLflow run

# --- A reproduction's runs (arnn.reproduction) --------------------------------------------
STAGE: Final = "arnn.stage"  # SEARCH_STAGE or FINAL_STAGE
CELL_TASK: Final = "arnn.cell_task"
CELL_MODEL: Final = "arnn.cell_model"
BUDGET: Final = "arnn.budget"  # smoke, quick or paper
TABLE: Final = "arnn.table"
FINAL_SEEDS: Final = "arnn.final_seeds"  # on a final sweep's run: the seeds it was asked for

SEARCH_STAGE: Final = "search"
FINAL_STAGE: Final = "final"

# --- Kinds of run -------------------------------------------------------------------------
TRAIN_RUN: Final = "train"
SWEEP_RUN: Final = "sweep"
TRIAL_RUN: Final = "trial"
FINAL_RUN: Final = "final"
FIGURE_RUN: Final = "figure"

# --- Metrics and params beside the training ones (arnn.train.EpochMetrics) ----------------
TRIAL_SCORE: Final = "trial_score"  # a trial's arnn.scoring.score over its epochs so far
SAMPLED_PARAM_PREFIX: Final = "sampled."  # + NAME: a trial's param, a value its sweep sampled


def column(tag: str) -> str:
    """The column of a runs frame (MlflowClient.search_runs as pandas) that holds `tag`."""
    return f"tags.{tag}"


def equals(tag: str, value: str) -> str:
    """An MLflow search filter: runs whose `tag` is `value`."""
    return f"tags.`{tag}` = '{value}'"
