"""Reading runs back leaves the process's tracking settings as they were."""

from __future__ import annotations

import os

from mlflow.tracking import MlflowClient

from arnn.tracking import TrackedRun, runs_frame


def test_reading_runs_leaves_the_environment_of_later_commands_alone(tmp_path):
    """mlflow.search_runs would set $MLFLOW_TRACKING_URI, which every command started
    afterwards inherits: a later `arnn sweep` would then log into this store."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = TrackedRun.start(tracking_uri=uri, experiment="e", run_name="r", params={"a": "1"})
    run.finish("FINISHED")
    frame = runs_frame(uri, "e")
    assert "MLFLOW_TRACKING_URI" not in os.environ
    (row,) = frame.to_dict("records")
    assert row["run_id"] == run.run_id and row["params.a"] == "1" and row["status"] == "FINISHED"
    assert row["tags.mlflow.runName"] == "r"
    experiment = MlflowClient(uri).get_experiment_by_name("e")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert runs_frame(uri, "absent").empty
