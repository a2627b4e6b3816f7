"""A validated Spec as an Optuna define-by-run search space and sampler."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from arnn import scoring
from arnn.sweep.spec import BoolParam, CategoricalParam, FloatParam, IntParam, Spec, param_values


class DefineByRun:
    """space(trial) samples each parameter whose `when` holds for what was sampled before.

    It only calls trial.suggest_*; OptunaSearch collects the values it suggests. A class,
    not a closure, because Ray pickles the searcher, and this with it, to resume a sweep.
    """

    def __init__(self, spec: Spec):
        self.spec = spec
        self.order = spec.param_order()

    def __call__(self, trial: optuna.Trial) -> None:
        chosen: dict[str, Any] = {}
        for name in self.order:
            if self.spec.is_active(name, chosen):
                chosen[name] = _suggest(trial, name, self.spec.params[name])


def _suggest(trial: optuna.Trial, name: str, param) -> Any:
    if isinstance(param, FloatParam):
        return trial.suggest_float(name, param.low, param.high, log=param.log, step=param.step)
    if isinstance(param, IntParam):
        return trial.suggest_int(name, param.low, param.high, log=param.log, step=param.step)
    if isinstance(param, CategoricalParam):
        return trial.suggest_categorical(name, param.choices)
    if isinstance(param, BoolParam):
        return trial.suggest_categorical(name, [False, True])
    raise TypeError(f"unknown parameter kind {param!r}")


def distributions(spec: Spec) -> dict[str, optuna.distributions.BaseDistribution]:
    """Each parameter's Optuna distribution, as DefineByRun suggests it."""
    found: dict[str, optuna.distributions.BaseDistribution] = {}
    for name, param in spec.params.items():
        if isinstance(param, FloatParam):
            found[name] = optuna.distributions.FloatDistribution(
                param.low, param.high, log=param.log, step=param.step
            )
        elif isinstance(param, IntParam):
            found[name] = optuna.distributions.IntDistribution(
                param.low, param.high, log=param.log, step=param.step
            )
        elif isinstance(param, CategoricalParam):
            found[name] = optuna.distributions.CategoricalDistribution(param.choices)
        else:
            found[name] = optuna.distributions.CategoricalDistribution([False, True])
    return found


def trial_state(outcome: str, score: float | None) -> optuna.trial.TrialState | None:
    """What Optuna is told of a trial that ended with `outcome` (arnn.scoring): finished
    with a score COMPLETE, stopped by ASHA PRUNED, diverged, failed or finished without a
    finite score FAIL; None for one that has not ended (in flight, interrupted)."""
    if outcome == scoring.FINISHED:
        return TrialState.COMPLETE if score is not None else TrialState.FAIL
    if outcome == scoring.PRUNED:
        return TrialState.PRUNED
    if outcome in (scoring.DIVERGED, scoring.FAILED):
        return TrialState.FAIL
    return None


def make_sampler(spec: Spec) -> optuna.samplers.BaseSampler:
    seed = spec.sampler.seed
    if spec.sampler.type == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.sampler.type == "grid":
        grid = {name: param_values(param) for name, param in spec.params.items()}
        return optuna.samplers.GridSampler(grid, seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def num_trials(spec: Spec, samples: int | None = None) -> int:
    """Trials to run: --samples, else the spec's; a grid runs each point once."""
    if spec.sampler.type == "grid":
        return spec.grid_size()
    return samples or spec.num_samples
