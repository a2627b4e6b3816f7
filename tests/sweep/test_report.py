"""The sweep report, over a real MLflow SQLite store written the way a sweep writes it."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from arnn import record
from arnn.errors import UsageError
from arnn.sweep.driver import spec_record
from arnn.sweep.names import trial_name
from arnn.sweep.report import FILES, write_report
from arnn.sweep.spec import parse_spec

EXPERIMENT = "arnn"
BASE = {
    "task": "adding",
    "task_options": {"length": 8},
    "model": "antisymmetric",
    "fixed": {"hidden": 8, "epochs": 3},
    "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
}
LOG_FLOAT = {"type": "float", "low": 0.001, "high": 1.0, "log": True}
SPECS = {
    "name": {  # the sweep of most tests: eps and gamma mapped, lr searched too
        **BASE,
        "params": {
            "eps": LOG_FLOAT,
            "gamma": LOG_FLOAT,
            "lr": {"type": "float", "low": 0.0001, "high": 0.1, "log": True},
        },
    },
    "lonely": {  # one finished trial, and one numeric parameter: nothing to map or rank
        **BASE,
        "params": {"gated": {"type": "bool"}, "lr": LOG_FLOAT},
    },
    "cond": {  # gamma only where gated: conditional
        **BASE,
        "params": {
            "gated": {"type": "bool"},
            "eps": {"type": "categorical", "choices": [0.01, 0.1, 1.0]},
            "gamma": {**LOG_FLOAT, "when": {"gated": True}},
        },
    },
}
# How each outcome leaves its MLflow run (arnn.sweep.tune: ASHA's are closed KILLED).
STATUS = {"finished": "FINISHED", "pruned": "KILLED", "diverged": "FINISHED", "failed": "FAILED"}
# trial id, outcome (the tag arnn.status), sampled values, val_accuracy per epoch
TRIALS = {
    "name": [
        ("a1b2c_00000", "finished", {"eps": 0.1, "gamma": 0.01, "lr": 0.003}, [0.31, 0.52, 0.61]),
        ("a1b2c_00001", "finished", {"eps": 0.05, "gamma": 0.003, "lr": 0.01}, [0.22, 0.45, 0.74]),
        ("a1b2c_00002", "finished", {"eps": 0.3, "gamma": 0.1, "lr": 0.0005}, [0.25, 0.30, 0.33]),
        ("a1b2c_00003", "pruned", {"eps": 0.02, "gamma": 0.5, "lr": 0.0002}, [0.11]),
        ("a1b2c_00004", "diverged", {"eps": 0.9, "gamma": 0.002, "lr": 0.08}, [0.15, 0.12]),
        ("a1b2c_00005", "failed", {"eps": 0.002, "gamma": 0.8, "lr": 0.05}, []),
    ],
    "lonely": [
        ("d4e5f_00000", "finished", {"gated": True, "lr": 0.01}, [0.4, 0.5, 0.55]),
        ("d4e5f_00001", "pruned", {"gated": False, "lr": 0.2}, [0.1]),
    ],
    "cond": [
        ("g7h8i_00000", "finished", {"gated": True, "eps": 0.1, "gamma": 0.01}, [0.3, 0.6, 0.7]),
        ("g7h8i_00001", "finished", {"gated": False, "eps": 1.0}, [0.2, 0.3, 0.35]),
        ("g7h8i_00002", "finished", {"gated": True, "eps": 0.01, "gamma": 0.3}, [0.3, 0.4, 0.5]),
        ("g7h8i_00003", "finished", {"gated": False, "eps": 0.1}, [0.25, 0.3, 0.4]),
        ("g7h8i_00004", "diverged", {"gated": True, "eps": 1.0, "gamma": 0.001}, []),
    ],
}  # fmt: skip


def _metrics(values: dict[str, float], step: int) -> list[Metric]:
    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, step) for k, v in values.items()]


def _write_sweep(client: MlflowClient, experiment_id: str, name: str, folder: Path) -> str:
    """A sweep's parent run and trial runs, with the tags, params and metrics that
    arnn.sweep.driver and arnn.sweep.tune log."""
    spec = parse_spec({"name": name, **SPECS[name]})
    total = len(TRIALS[name])
    parent = client.create_run(
        experiment_id,
        run_name=name,
        tags={
            record.SWEEP: name,
            record.KIND: "sweep",
            record.SPEC: json.dumps(spec_record(spec, total), sort_keys=True),
            "arnn.status": "finished",
        },
    ).info.run_id
    client.log_batch(
        parent,
        params=[Param("metric", spec.metric), Param("mode", spec.mode)]
        + [Param("searched", ",".join(spec.params))],
    )
    path = folder / f"{name}-spec" / "spec.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(spec.model_dump(mode="json", exclude_defaults=True)))
    client.log_artifact(parent, str(path), artifact_path="spec")
    for number, (trial, outcome, sampled, curve) in enumerate(TRIALS[name]):
        tags = {
            record.TRIAL_ID: trial,
            record.SWEEP: name,
            record.KIND: "trial",
            "arnn.trial_number": str(number),
            "arnn.sampled": json.dumps(sampled, sort_keys=True),
            "mlflow.parentRunId": parent,
        }
        run_name = trial_name(number, sampled)
        run = client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
        client.log_batch(run, params=[Param(f"sampled.{k}", str(v)) for k, v in sampled.items()])
        for epoch, value in enumerate(curve, start=1):
            epoch_values = {
                "val_accuracy": value,
                "val_loss": 1 - value,
                "train_accuracy": value + 0.05,
                "train_loss": 0.9 - value,
                record.TRIAL_SCORE: max(curve[:epoch]),
                "epochs": epoch,
                "epoch_seconds": 1.5,
            }
            client.log_batch(run, metrics=_metrics(epoch_values, epoch))
        end = {"arnn.status": outcome}
        if outcome == "diverged":
            end["arnn.diverged_at"] = f"non-finite loss at step {len(curve) * 10 + 3}"
        if outcome == "failed":
            end["arnn.error"] = "RuntimeError: out of memory"
        if outcome in ("finished", "diverged"):
            client.log_batch(run, metrics=_metrics({"train_seconds": 4.5 + len(curve)}, 0))
        client.log_batch(run, tags=[RunTag(k, v) for k, v in end.items()])
        client.set_terminated(run, status=STATUS[outcome])
    client.set_terminated(parent, status="FINISHED")
    return parent


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[str, dict[str, str]]:
    """One SQLite store holding the three sweeps: its URI and each sweep's parent run id."""
    root = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment(
        EXPERIMENT, artifact_location=(root / "artifacts").as_uri()
    )
    parents = {name: _write_sweep(client, experiment_id, name, root) for name in TRIALS}
    return uri, parents


def _check_png(path: Path) -> None:
    image = matplotlib.image.imread(path)
    height, width = image.shape[:2]
    assert 300 <= height <= 2000 and 600 <= width <= 2000, (path.name, image.shape)
    rgb = image[..., :3].reshape(-1, 3)
    colours = np.unique((rgb * 255).round().astype(np.uint8), axis=0)
    assert len(colours) > 10, (path.name, len(colours))
    assert (rgb < 0.98).any(axis=1).mean() > 0.01, f"{path.name} is all but blank"


def _trial_runs(uri: str, parent: str):
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'"
    )


def test_report_in_a_folder(store, tmp_path):
    uri, parents = store
    out = tmp_path / "r"
    files = write_report(uri, EXPERIMENT, "name", out=out)

    assert files.sweep == "name" and files.parent_run_id == parents["name"]
    assert not files.logged and Path(files.location) == out.resolve()
    assert files.files == FILES
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    for name in FILES:
        if name.endswith(".png"):
            _check_png(out / name)
    assert files.notes == ()  # six trials, eps and gamma in each: nothing to caveat

    # trials.csv, row for row against the MLflow runs
    table = pd.read_csv(out / "trials.csv", dtype=str, keep_default_na=False)
    assert list(table.columns) == [
        "number", "name", "trial", "eps", "gamma", "lr", "outcome", "score", "epochs",
        "seconds", "run_id",
    ]  # fmt: skip
    runs = {r.data.tags[record.TRIAL_ID]: r for r in _trial_runs(uri, parents["name"])}
    assert list(table["trial"]) == sorted(runs) == [t[0] for t in TRIALS["name"]]
    assert list(table["number"]) == [str(i) for i in range(len(TRIALS["name"]))]
    for row in table.to_dict("records"):
        run = runs[row["trial"]]
        assert row["run_id"] == run.info.run_id and row["name"] == run.info.run_name
        assert row["outcome"] == run.data.tags["arnn.status"]
        sampled = json.loads(run.data.tags["arnn.sampled"])
        for name in ("eps", "gamma", "lr"):
            assert float(row[name]) == sampled[name]
        metrics = run.data.metrics
        if record.TRIAL_SCORE in metrics:
            assert float(row["score"]) == pytest.approx(metrics[record.TRIAL_SCORE])
            assert int(row["epochs"]) == metrics["epochs"]
        else:
            assert row["score"] == "" and row["epochs"] == "0"
        if "train_seconds" in metrics:
            assert float(row["seconds"]) == pytest.approx(metrics["train_seconds"])
        elif int(row["epochs"]):  # stopped before its end: the epochs it trained
            assert float(row["seconds"]) == pytest.approx(1.5 * int(row["epochs"]))
        else:
            assert row["seconds"] == ""
    assert list(table["outcome"]) == [t[1] for t in TRIALS["name"]]

    importance = json.loads((out / "importance.json").read_text())
    assert importance["metric"] == "val_accuracy" and importance["finished_trials"] == 3
    assert importance["evaluator"].endswith("ImportanceEvaluator")
    assert set(importance["importances"]) == {"eps", "gamma", "lr"}
    assert math.isclose(sum(importance["importances"].values()), 1.0, rel_tol=1e-6)
    assert "note" not in importance


def test_report_logged_to_the_sweeps_run(store):
    uri, parents = store
    files = write_report(uri, EXPERIMENT, parents["name"])  # by run id this time

    client = MlflowClient(uri)
    assert files.logged and files.sweep == "name"
    assert files.location == client.get_run(parents["name"]).info.artifact_uri
    names = {a.path for a in client.list_artifacts(parents["name"])}
    assert names == {*FILES, "spec"}
    with_csv = client.download_artifacts(parents["name"], "trials.csv")
    assert len(pd.read_csv(with_csv)) == len(TRIALS["name"])


def test_too_few_finished_trials_and_too_few_numeric_parameters(store, tmp_path):
    uri, _ = store
    files = write_report(uri, EXPERIMENT, "lonely", out=tmp_path)

    importance = json.loads((tmp_path / "importance.json").read_text())
    assert importance["finished_trials"] == 1
    assert importance["note"] == "only 1 trial finished with a score; importances need at least 2"
    assert "importances" not in importance
    assert any(note.startswith("importance: only 1 trial finished") for note in files.notes)
    for name in ("curves.png", "map.png", "importance.png"):  # notes in words, not blank
        _check_png(tmp_path / name)


def test_conditional_parameters(store, tmp_path):
    uri, _ = store
    files = write_report(uri, EXPERIMENT, "cond", out=tmp_path)

    assert files.notes == (
        "map: 2 of 5 trials left out: they did not sample eps and gamma (conditional parameters)",
    )
    importance = json.loads((tmp_path / "importance.json").read_text())
    assert importance["finished_trials"] == 4
    assert set(importance["importances"]) == {"gated", "eps", "gamma"}
    assert math.isclose(sum(importance["importances"].values()), 1.0, rel_tol=1e-6)
    table = pd.read_csv(tmp_path / "trials.csv", dtype=str, keep_default_na=False)
    assert list(table["gamma"]) == ["0.01", "", "0.3", "", "0.001"]
    assert list(table["gated"]) == ["True", "False", "True", "False", "True"]
    _check_png(tmp_path / "map.png")


def test_an_unknown_sweep_is_one_line_naming_those_there_are(store, tmp_path):
    uri, _ = store
    with pytest.raises(UsageError) as raised:
        write_report(uri, EXPERIMENT, "nosuch", out=tmp_path)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("sweep 'nosuch': no sweep of that name or run id")
    for name in TRIALS:
        assert name in message.split("sweeps there")[1]
    assert not list(tmp_path.iterdir())

    with pytest.raises(
        UsageError, match=r"no experiment 'other' in .* \(experiments there: .*arnn"
    ):
        write_report(uri, "other", "name", out=tmp_path)
