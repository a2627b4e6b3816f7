from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from arnn.config import TrainConfig
from arnn.dynamics import end_to_end_jacobian, last_state
from arnn.models import create_model
from arnn.tracking import TrackedRun
from arnn.train import train

SCRIPT = Path(__file__).resolve().parents[2] / "reproduce" / "dynamics.py"


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("antisymmetric", {"eps": 0.2}),
        ("lstm", {}),
        ("gru", {}),
        ("fastrnn", {}),
        ("rnn", {"init": "orthogonal"}),
        ("relu_rnn", {"init": "identity"}),
    ],
)
def test_the_jacobian_matches_finite_differences(name, options):
    torch.manual_seed(0)
    model = create_model(name, input_size=2, output_size=3, hidden=5, **options).double()
    sequence = torch.randn(6, 2, dtype=torch.float64)
    jacobian = end_to_end_jacobian(model.encoder, sequence)
    step = 1e-6
    for k in range(5):
        h0 = torch.zeros(1, 5, dtype=torch.float64)
        h0[0, k] = step
        plus = last_state(model.encoder, sequence.unsqueeze(0), h0)
        minus = last_state(model.encoder, sequence.unsqueeze(0), -h0)
        torch.testing.assert_close(
            jacobian[:, k], ((plus - minus) / (2 * step))[0], rtol=1e-5, atol=1e-8
        )


def _trained_run(uri: str, **overrides) -> str:
    config = TrainConfig.parse(
        {
            "task": "adding",
            "task_options": {"length": 12, "train_size": 256, "test_size": 32},
            "hidden": 8,
            "epochs": 1,
            "val_size": 32,
            "batch_size": 64,
            "device": "cpu",
            **overrides,
        }
    )
    run = TrackedRun.start(tracking_uri=uri, experiment="arnn", run_name="dyn")
    run.log_result(train(config), config)
    run.finish()
    return run.run_id


def test_dynamics_logs_plots_and_metrics_back_to_each_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    small_gamma = _trained_run(uri, model="antisymmetric", eps=0.1, gamma=0.01)
    lstm = _trained_run(uri, model="lstm")
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            small_gamma,
            lstm,
            "--tracking-uri",
            uri,
            "--sequences",
            "8",
            "--jacobians",
            "2",
            "--out",
            str(tmp_path / "cmp"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    client = MlflowClient(uri)
    for run_id in (small_gamma, lstm):
        run = client.get_run(run_id)
        artifacts = {a.path for a in client.list_artifacts(run_id, "dynamics")}
        assert artifacts == {"dynamics/eigenvalues.png", "dynamics/gradient_norms.png"}
        assert len(client.get_metric_history(run_id, "dynamics_grad_norm")) == 12
        assert run.data.metrics["jacobian_eig_modulus_max"] > 0
    # Small steps of a nearly antisymmetric A keep the Jacobian's eigenvalues near 1.
    moduli = client.get_run(small_gamma).data.metrics
    assert 0.8 < moduli["jacobian_eig_modulus_mean"] < 1.2
    assert (tmp_path / "cmp" / "eigenvalues.png").exists()


def test_a_run_without_weights_is_one_line(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = TrackedRun.start(tracking_uri=uri, experiment="arnn")
    run.finish()
    done = subprocess.run(
        [sys.executable, str(SCRIPT), run.run_id, "--tracking-uri", uri],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "no trained weights" in done.stderr
