"""Adding a model is one file (tests/models/scratch_cell.py) plus one registry line: the
model then trains through `arnn train` and is validated in a spec like any other."""

from __future__ import annotations

import pydantic
import pytest

from arnn.cli import main
from arnn.errors import UsageError
from arnn.models import ModelOptions, list_models, register_model
from arnn.models._registry import MODELS
from arnn.sweep.spec import parse_spec
from tests.conftest import only_run


class LeakOptions(ModelOptions):
    leak: float = pydantic.Field(0.5, gt=0, le=1, description="the share of the update")


@pytest.fixture
def scratch_model():
    register_model(
        "scratch_leaky",
        build="tests.models.scratch_cell:build",
        options=LeakOptions,
        description="leaky tanh RNN",
    )  # noqa: E501  (the one line)
    yield "scratch_leaky"
    MODELS.remove("scratch_leaky")


def test_a_registered_model_trains_through_arnn_train(scratch_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = main(
        [
            "train", "--model", scratch_model, "--model-option", "leak=0.25", "--hidden", "4",
            "--task", "adding", "--task-option", "length=6", "--task-option", "train_size=64",
            "--task-option", "test_size=16", "--val-size", "16", "--epochs", "1",
            "--batch-size", "16", "--device", "cpu", "--tracking-uri", uri,
        ]
    )  # fmt: skip
    assert code == 0
    _, run = only_run(uri)
    assert run.info.status == "FINISHED"
    assert run.data.params["model.name"] == scratch_model
    assert run.data.params["model.leak"] == "0.25"
    assert scratch_model in list_models()


def test_a_registered_model_is_validated_in_a_spec(scratch_model):
    spec = {
        "name": "scratch",
        "task": "adding",
        "model": scratch_model,
        "fixed": {"hidden": 4, "epochs": 2},
        "params": {"leak": {"type": "float", "low": 0.1, "high": 1.0}},
    }
    assert parse_spec(spec).trial_config({"leak": 0.3}).model.options["leak"] == 0.3
    spec["params"]["leak"]["high"] = 2.0
    with pytest.raises(UsageError, match=r"params.leak.high: model scratch_leaky: option 'leak'"):
        parse_spec(spec)
