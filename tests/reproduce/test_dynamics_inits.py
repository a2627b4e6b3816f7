"""reproduce/dynamics.py on the initialisation remedies the paper argues against: the
IRNN (relu_rnn, init=identity) and the orthogonally initialised tanh RNN beside the
antisymmetric cell, on the same test sequences; runs of different tasks are refused."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from mlflow.tracking import MlflowClient

from tests.reproduce.test_dynamics import SCRIPT, _trained_run


def _dynamics(*args: str, cwd):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def test_the_irnn_and_the_orthogonal_rnn_beside_the_antisymmetric_cell(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runs = {
        "antisymmetric": _trained_run(uri, model="antisymmetric", eps=0.1, gamma=0.01),
        "relu_rnn init=identity": _trained_run(uri, model="relu_rnn", init="identity"),
        "rnn init=orthogonal": _trained_run(uri, model="rnn", init="orthogonal"),
    }
    done = _dynamics(
        *runs.values(),
        *("--tracking-uri", uri, "--sequences", "8", "--jacobians", "2"),
        *("--out", str(tmp_path / "cmp")),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    printed = done.stdout.splitlines()
    client = MlflowClient(uri)
    for label, run_id in runs.items():
        assert any(line.startswith(f"{label} ") and run_id[:8] in line for line in printed)
        artifacts = {a.path for a in client.list_artifacts(run_id, "dynamics")}
        assert artifacts == {"dynamics/eigenvalues.png", "dynamics/gradient_norms.png"}
        assert len(client.get_metric_history(run_id, "dynamics_grad_norm")) == 12  # T = 12
    assert {p.name for p in (tmp_path / "cmp").iterdir()} == {
        "eigenvalues.png",
        "gradient_norms.png",
    }


def _script_main():
    """reproduce/dynamics.py's main, loaded in this process (a refusal needs no torch work)."""
    spec = importlib.util.spec_from_file_location("dynamics_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_runs_of_different_tasks_are_not_compared(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # main sets it
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = _trained_run(uri, model="rnn", init="identity")
    other = _trained_run(
        uri,
        model="rnn",
        task_options={"length": 10, "train_size": 256, "test_size": 32},
    )
    capsys.readouterr()
    assert _script_main()([first, other, "--tracking-uri", uri]) == 2
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1, stderr
    assert "must share a task and its options" in stderr
    assert not (tmp_path / "dynamics").exists()
    assert not MlflowClient(uri).get_metric_history(first, "dynamics_grad_norm")
