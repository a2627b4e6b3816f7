"""Where a sweep's Optuna study is kept: beside a tracking file, or where --study-storage
says; never a file on this machine for a cluster."""

from __future__ import annotations

import pytest

from arnn.errors import UsageError
from arnn.sweep.study import resolve_study_storage


def test_the_study_sits_beside_a_tracking_file_unless_told(tmp_path, monkeypatch):
    monkeypatch.delenv("ARNN_STUDY_STORAGE", raising=False)
    tracking = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    assert resolve_study_storage(None, tracking, "local") == (
        f"sqlite:///{tmp_path / 'runs' / 'optuna.db'}"
    )
    assert resolve_study_storage("sqlite:///elsewhere.db", tracking, "local") == (
        "sqlite:///elsewhere.db"
    )
    assert resolve_study_storage(None, "http://127.0.0.1:5000", "local") is None
    monkeypatch.setenv("ARNN_STUDY_STORAGE", "postgresql://head/optuna")
    assert resolve_study_storage(None, "http://head:5000", "auto") == "postgresql://head/optuna"


def test_a_cluster_may_not_keep_its_study_in_a_file_here_nor_a_bad_url(tmp_path):
    with pytest.raises(UsageError, match=r"--study-storage: sqlite:///x.db is a file on this"):
        resolve_study_storage("sqlite:///x.db", "http://head:5000", "auto")
    with pytest.raises(UsageError, match=r"--study-storage: 'not a url' is not an SQLAlchemy"):
        resolve_study_storage("not a url", "http://head:5000", "local")


def test_a_study_of_another_sweep_is_never_replaced(tmp_path):
    import optuna
    import pandas as pd

    from arnn.sweep.spec import parse_spec
    from arnn.sweep.study import write_study

    spec = parse_spec(
        {
            "name": "s",
            "task": "adding",
            "model": "antisymmetric",
            "fixed": {"epochs": 1},
            "params": {"lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True}},
            "scheduler": {"type": "none"},
        }
    )
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    unused = f"sqlite:///{tmp_path / 'mlflow.db'}"  # no trial rows: nothing is read from it
    assert write_study(storage, "s", spec, pd.DataFrame(), unused, parent="run-a") == 0
    assert write_study(storage, "s", spec, pd.DataFrame(), unused, parent="run-a") == 0
    with pytest.raises(UsageError, match=r"a study named 's' in .* belongs to another sweep"):
        write_study(storage, "s", spec, pd.DataFrame(), unused, parent="run-b")
    kept = optuna.load_study(study_name="s", storage=storage)
    assert kept.user_attrs["mlflow_parent_run_id"] == "run-a"
