from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from mlflow.tracking import MlflowClient

from arnn.phase import INITIAL_STATES, W_DIFF, W_MINUS, W_ZERO, panels, trajectory

SCRIPT = Path(__file__).resolve().parents[2] / "reproduce" / "figure1.py"


def _norms(weight):
    return [np.linalg.norm(trajectory(weight, s, residual=True), axis=1) for s in INITIAL_STATES]


def test_the_dynamics_behind_the_figure():
    for norms in _norms(W_ZERO):  # Euler on purely imaginary eigenvalues spirals out
        assert norms[-1] > 1.2 * norms[0]
        assert norms[25:].max() > norms[:25].max()  # outwards, turn after turn
    for norms in _norms(W_DIFF):  # diffusion keeps it in a narrow band
        assert np.all(norms > 0.85 * norms[0]) and np.all(norms < 1.15 * norms[0])
    for norms in _norms(W_MINUS):  # contracts towards the origin
        assert norms[-1] < 0.1 * norms[0]
    dets = {p.label: round(float(np.linalg.det(p.weight))) for p in panels()}
    assert dets["c"] == -1 and dets["d"] == 1  # a reflection and a rotation


def test_figure1_writes_the_png_and_logs_it(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "figure1.png"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out), "--tracking-uri", uri],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("arnn").experiment_id])
    assert [a.path for a in client.list_artifacts(run.info.run_id, "figures")] == [
        "figures/figure1.png"
    ]
