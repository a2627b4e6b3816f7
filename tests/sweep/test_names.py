"""Run names that say what a run tried, and a console that says each thing once."""

from __future__ import annotations

from types import SimpleNamespace

from arnn.sweep.names import final_name, short, sweep_name, train_name, trial_name
from arnn.sweep.tune import ConsoleProgress


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


def test_the_console_prints_a_progress_line_only_when_it_changes(capsys):
    progress = ConsoleProgress(total=2, metric="val_loss", mode="min")
    pending = SimpleNamespace(trial_id="a", status="PENDING", last_result={})
    running = SimpleNamespace(trial_id="a", status="RUNNING", last_result={})
    progress.on_trial_start(0, [pending], pending)
    progress.on_trial_start(0, [pending], pending)  # nothing changed: said once
    progress.on_trial_start(0, [running], running)
    done = SimpleNamespace(
        trial_id="a",
        status="TERMINATED",
        last_result={"arnn_state": "finished", "trial_score": 0.5},
    )
    progress.on_trial_complete(0, [done], done)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == [
        "0 running, 0/2 done (0 finished, 0 pruned, 0 diverged, 0 failed); no finished trial yet",
        "1 running, 0/2 done (0 finished, 0 pruned, 0 diverged, 0 failed); no finished trial yet",
        "0 running, 1/2 done (1 finished, 0 pruned, 0 diverged, 0 failed); "
        "best finished: val_loss 0.5000 (trial a)",
    ]
