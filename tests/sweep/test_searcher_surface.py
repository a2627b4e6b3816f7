"""PrunedAwareOptunaSearch builds on Ray's OptunaSearch and reads three of its private
attributes (`_ot_trials`, `_completed_trials`, `_ot_study`); pyproject.toml pins Ray to
the minor version this was tested with. If a Ray release moves that surface, this test
says so by name, before any sweep tells Optuna the wrong thing."""

from __future__ import annotations

import optuna
import ray

from arnn import record, scoring
from arnn.sweep.spec import parse_spec
from arnn.sweep.tune import STATE, SweepSettings, _tune_config

SPEC = {
    "name": "surface",
    "task": "adding",
    "model": "antisymmetric",
    "fixed": {"hidden": 4, "epochs": 2},
    "params": {"lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True}},
    "num_samples": 2,
}


def _searcher(tmp_path):
    settings = SweepSettings(
        name="surface",
        spec=parse_spec(SPEC),
        tracking_uri="sqlite://",
        experiment="e",
        storage_path=str(tmp_path),
    )
    search = _tune_config(settings, 2).search_alg
    return getattr(search, "searcher", search)  # inside a ConcurrencyLimiter, if any


def test_rays_optuna_search_still_has_the_private_surface_the_searcher_reads(tmp_path):
    searcher = _searcher(tmp_path)
    searcher.suggest("a")
    surface = (("_ot_trials", dict), ("_completed_trials", set), ("_ot_study", optuna.Study))
    moved = [
        f"{name} (expected {kind.__name__})"
        for name, kind in surface
        if not isinstance(getattr(searcher, name, None), kind)
    ]
    assert not moved, (
        f"Ray {ray.__version__}'s OptunaSearch no longer has {', '.join(moved)}: "
        "PrunedAwareOptunaSearch (arnn/sweep/tune.py) must follow it, and pyproject.toml's pin"
    )
    assert isinstance(searcher._ot_trials["a"], optuna.Trial)


def test_each_outcome_reaches_optuna_as_its_state(tmp_path):
    searcher = _searcher(tmp_path)
    for trial_id in ("done", "stopped"):
        searcher.suggest(trial_id)
    searcher.on_trial_complete("done", {STATE: scoring.FINISHED, record.TRIAL_SCORE: 0.75})
    searcher.on_trial_complete("stopped", {STATE: "running", record.TRIAL_SCORE: 0.5})
    states = {t.number: (t.state, t.value) for t in searcher._ot_study.trials}
    assert states == {
        0: (optuna.trial.TrialState.COMPLETE, 0.75),
        1: (optuna.trial.TrialState.PRUNED, None),
    }
