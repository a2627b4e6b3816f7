"""Provenance: the dirty flag says whether the code differs from its commit, and nothing
the platform writes by default can set it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from arnn.provenance import git_state

ROOT = Path(__file__).resolve().parents[1]

# Every file or folder a command writes into the working folder unasked, by default:
# the tracking and study stores, Ray's state, checkpoints, data, reproduce/'s figures.
DEFAULT_OUTPUTS = (
    "mlflow.db",
    "optuna.db",
    "mlruns/0/meta.yaml",
    "mlartifacts/1/model/weights.pt",
    "ray_results/demo/experiment_state.json",
    "checkpoints/epoch.pt",
    "data/MNIST/raw/train-images-idx3-ubyte",
    "figure1.png",
    "dynamics/eigenvalues.png",
)


def _git(folder: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(folder), *args], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def checkout(tmp_path):
    _git(tmp_path, "init", "-q")
    (tmp_path / "model.py").write_text("x = 1\n")
    _git(tmp_path, "add", "model.py")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    return tmp_path


def test_outputs_in_the_checkout_do_not_make_it_dirty(checkout):
    for name in ("optuna.db", "mlflow.db", "table1.png"):
        (checkout / name).write_bytes(b"output")
    commit, dirty = git_state(checkout)
    assert commit == _git(checkout, "rev-parse", "HEAD").strip()
    assert dirty is False


def test_a_changed_or_added_tracked_file_makes_it_dirty(checkout):
    (checkout / "model.py").write_text("x = 2\n")
    assert git_state(checkout)[1] is True
    _git(checkout, "checkout", "-q", "model.py")
    (checkout / "new.py").write_text("y = 1\n")
    _git(checkout, "add", "new.py")
    assert git_state(checkout)[1] is True


def test_no_folder_outside_a_checkout_has_a_state(tmp_path):
    assert git_state(tmp_path) == (None, None)


def test_the_default_outputs_are_ignored_by_git():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    done = subprocess.run(
        ["git", "-C", str(ROOT), "check-ignore", "--no-index", "--verbose", *DEFAULT_OUTPUTS],
        capture_output=True,
        text=True,
    )
    ignored = {line.split("\t")[-1] for line in done.stdout.splitlines()}
    assert set(DEFAULT_OUTPUTS) - ignored == set()
