"""The one scoring rule: how a trial ended, what it scored, which trial is best, and when a
table cell is complete.

Optuna's `tell`, the sweep's console summary, the sweep run's tags and metrics, and the
choice of the configuration for final runs all call these functions, so that "best" means
one thing everywhere:

- a trial's score is its best validation value over its epochs (max or min, by the spec's
  mode), non-finite values ignored;
- the best trial is the one with the highest (or lowest) score among trials that finished:
  pruned, interrupted, diverged and failed trials are never the best.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

FINISHED, PRUNED, INTERRUPTED, DIVERGED, FAILED = (
    "finished",
    "pruned",
    "interrupted",
    "diverged",
    "failed",
)
NEVER_STARTED = "never started"
# A trial a killed driver had started but not yet saved in Tune's state: the resumed sweep
# never knows it and runs that slot again. Not an outcome: its run is deleted (see
# arnn.sweep.driver), out of every count.
LOST = "lost"
# How a trial run can end, as its MLflow tag arnn.status says; a trial that never started
# has no run, and is only counted.
OUTCOMES = (FINISHED, PRUNED, INTERRUPTED, DIVERGED, FAILED)
COUNTED = (*OUTCOMES, NEVER_STARTED)

Mode = Literal["max", "min"]
# Final runs use seeds FINAL_SEED_BASE, FINAL_SEED_BASE + 1, ...: never a search trial's
# seed, so that no "independent" final run replays the trial that was selected.
FINAL_SEED_BASE = 1000


def final_seeds(count: int) -> list[int]:
    return list(range(FINAL_SEED_BASE, FINAL_SEED_BASE + count))


def score(values: Iterable[float | None], mode: Mode) -> float | None:
    """A trial's score: its best finite value over epochs, or None when it has none."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None
    return max(finite) if mode == "max" else min(finite)


@dataclass(frozen=True)
class TrialRecord:
    """One trial as the tracking store holds it: `trial` is Ray's id (the tag
    arnn.trial_id, for tools), `name` what a person reads it as (t07, seed 1002)."""

    trial: str
    outcome: str
    score: float | None
    run_id: str | None = None
    epochs: int | None = None
    sampled: dict[str, Any] = field(default_factory=dict)
    name: str = ""


def best_trial(records: Iterable[TrialRecord], mode: Mode) -> TrialRecord | None:
    """The finished trial with the best score (ties: the first), or None."""
    candidates = [r for r in records if r.outcome == FINISHED and r.score is not None]
    if not candidates:
        return None
    pick = max if mode == "max" else min
    return pick(candidates, key=lambda r: r.score)


def ranked(records: Iterable[TrialRecord], mode: Mode) -> list[TrialRecord]:
    """Finished trials first, best first; then the rest by score; unscored last."""

    def key(record: TrialRecord):
        value = record.score
        if value is None:
            return (2, 0.0)
        return (0 if record.outcome == FINISHED else 1, -value if mode == "max" else value)

    return sorted(records, key=key)


def outcome_counts(records: Iterable[TrialRecord], total: int) -> dict[str, int]:
    """Trials by outcome, with those that never started (total minus those that did)."""
    counts = dict.fromkeys(COUNTED, 0)
    started = 0
    for record in records:
        counts[record.outcome if record.outcome in OUTCOMES else FAILED] += 1
        started += 1
    counts[NEVER_STARTED] = max(total - started, 0)
    return counts


def every_trial_failed(counts: dict[str, int]) -> bool:
    """True only when trials ran and every one of them failed."""
    return counts.get(FAILED, 0) > 0 and not any(
        counts.get(k, 0) for k in (FINISHED, PRUNED, INTERRUPTED, DIVERGED)
    )


@dataclass(frozen=True)
class SeedCount:
    """A cell's final runs for the seeds asked: done (finished or diverged) and the rest."""

    asked: int
    finished: int
    diverged: int
    missing: tuple[int, ...]  # seeds asked that have no finished or diverged run

    @property
    def complete(self) -> bool:
        return not self.missing


def count_seeds(outcomes_by_seed: dict[int, Sequence[str]], seeds: Sequence[int]) -> SeedCount:
    """How far a cell's final runs are: `outcomes_by_seed` maps each seed to the outcomes of
    its runs (a seed run twice after a failure has two). A seed is done when one of its runs
    finished or diverged. The one definition of "complete" for run.py and table.py."""
    finished = diverged = 0
    missing = []
    for seed in seeds:
        outcomes = outcomes_by_seed.get(seed, ())
        if FINISHED in outcomes:
            finished += 1
        elif DIVERGED in outcomes:
            diverged += 1
        else:
            missing.append(seed)
    return SeedCount(len(seeds), finished, diverged, tuple(missing))
