"""Run names that say what a run tried, and a console that says each thing once."""

from __future__ import annotations

import pickle
import time

from ray.tune.experiment import Trial

from arnn.sweep.names import final_name, short, sweep_name, train_name, trial_name
from arnn.sweep.tune import TRIAL_NUMBER, ConsoleProgress, trial_label


def test_a_trials_name_is_its_number_and_its_sampled_values():
    sampled = {"gated": True, "lr": 0.004321, "eps": 0.1, "gamma": 0.02}
    assert trial_name(6, sampled) == "t07 gated lr=0.0043 ε=0.1 γ=0.02"
    assert trial_name(0, {"gated": False, "lr": 1e20}) == "t01 lr=1e+20"
    assert trial_name(None, {"dt": 0.042}) == "trial dt=0.042"
    assert final_name(1002) == "seed 1002"
    assert train_name("lem", "pmnist") == "lem on pmnist"
    assert sweep_name("demo-20261128-233500", "demo") == "demo-20261128-233500"
    assert sweep_name("mine", "demo") == "mine · demo"
    assert short(0.123456, digits=4) == "0.1235" and short("sgd") == "sgd"


def _trial(trial_id: str, number: int, **sampled) -> Trial:
    """A trial as Tune holds it: the searcher's values with the trial's number."""
    config = {TRIAL_NUMBER: number, **sampled}
    return Trial("run_trial", config=config, trial_id=trial_id, stub=True)


def _start(progress: ConsoleProgress, trials: list[Trial], trial: Trial) -> None:
    """What Tune does as a trial's actor starts: the callbacks first, then RUNNING; then
    the step of its loop ends."""
    progress.on_trial_start(0, trials, trial)
    trial.set_status(Trial.RUNNING)
    progress.on_step_end(0, trials)


def _end(progress: ConsoleProgress, trials: list[Trial], trial: Trial, result: dict) -> None:
    """A trial's last result, then on_trial_complete, then TERMINATED, then the step's end."""
    trial.update_last_result(result)
    progress.on_trial_complete(0, trials, trial)
    trial.set_status(Trial.TERMINATED)
    progress.on_step_end(0, trials)


def _said(capsys) -> list[str]:
    return [line.split("] ", 1)[1] for line in capsys.readouterr().out.splitlines()]


def test_the_console_counts_the_trials_that_run_and_names_them_as_their_runs(capsys):
    """Tune calls on_trial_start before it marks the trial RUNNING, on_trial_complete
    before TERMINATED: two trials at once are 2 running, and each is named t01, t02."""
    first, second = _trial("4b1e581a", 0, lr=0.1), _trial("9c2d7f30", 1, lr=0.2)
    trials = [first, second]
    progress = ConsoleProgress(total=2, metric="val_loss", mode="min", kind="trial", settle_s=0)
    progress.setup()
    _start(progress, trials, first)
    _start(progress, trials, second)
    progress.on_trial_start(0, trials, second)  # nothing changed: said once
    progress.on_step_end(0, trials)
    _end(progress, trials, first, {"arnn_state": "finished", "trial_score": 0.5})
    second.set_status(Trial.ERROR)
    progress.on_trial_error(0, trials, second)
    progress.on_experiment_end(trials)
    said = _said(capsys)
    assert said == [
        "1 running, 0/2 done (0 finished, 0 pruned, 0 diverged, 0 failed); no finished trial yet",
        "2 running, 0/2 done (0 finished, 0 pruned, 0 diverged, 0 failed); no finished trial yet",
        "1 running, 1/2 done (1 finished, 0 pruned, 0 diverged, 0 failed); "
        "best finished: val_loss 0.5000 (trial t01)",
        "0 running, 2/2 done (1 finished, 0 pruned, 0 diverged, 1 failed); "
        "best finished: val_loss 0.5000 (trial t01)",
    ]
    assert not [line for line in said if "4b1e581a" in line or "9c2d7f30" in line]


def test_a_change_that_does_not_last_is_not_a_line(capsys):
    """A trial's end and the next one's start come a moment apart (two steps of Tune's
    loop): one line, of the state that held, with the time it began."""
    first, second = _trial("4b1e581a", 0, lr=0.1), _trial("9c2d7f30", 1, lr=0.2)
    trials = [first, second]
    progress = ConsoleProgress(total=2, metric="val_loss", mode="min", kind="trial", settle_s=60)
    progress.setup()
    _start(progress, trials, first)
    _end(progress, trials, first, {"arnn_state": "diverged", "trial_score": None})
    _start(progress, trials, second)
    progress.on_experiment_end(trials)  # Tune's end, or its graceful stop: said, settled or not
    assert _said(capsys) == [
        "1 running, 1/2 done (0 finished, 0 pruned, 1 diverged, 0 failed); no finished trial yet"
    ]


def test_a_resumed_sweeps_console_starts_its_clock_and_counts_the_restored_trials(capsys):
    """Tune pickles the callbacks with the sweep and unpickles them on --resume, then calls
    setup: the first line after a resume counts from it, not from the first start, and
    counts the trials that ended before it."""
    progress = ConsoleProgress(total=2, metric="val_accuracy", mode="max", kind="trial", settle_s=0)
    time.sleep(1.5)  # the first session's time, and the pause before the resume
    restored = pickle.loads(pickle.dumps(progress))
    ended, resumed = _trial("4b1e581a", 0, lr=0.1), _trial("9c2d7f30", 1, lr=0.2)
    ended.update_last_result({"arnn_state": "finished", "trial_score": 0.75})
    ended.set_status(Trial.TERMINATED)
    restored.setup(stop=None, num_samples=2, total_num_samples=2)
    _start(restored, [ended, resumed], resumed)
    (line,) = capsys.readouterr().out.splitlines()
    assert line == (
        "[     0 s] 1 running, 1/2 done (1 finished, 0 pruned, 0 diverged, 0 failed); "
        "best finished: val_accuracy 0.7500 (trial t01)"
    )


def test_final_runs_are_named_by_seed_and_not_ranked_on_the_console(capsys):
    """Final runs are seed replicas of one configuration: no "best" among them."""
    run = _trial("4b1e581a", 0, seed=1000)
    progress = ConsoleProgress(total=1, metric="val_accuracy", mode="max", kind="final", settle_s=0)
    progress.setup()
    _start(progress, [run], run)
    _end(progress, [run], run, {"arnn_state": "finished", "trial_score": 0.75})
    assert _said(capsys) == [
        "1 running, 0/1 done (0 finished, 0 pruned, 0 diverged, 0 failed)",
        "0 running, 1/1 done (1 finished, 0 pruned, 0 diverged, 0 failed)",
    ]
    assert trial_label("final", 0, {"seed": 1000}) == "seed 1000"
    assert trial_label("trial", 6, {"lr": 0.1}) == "t07"
