"""The configuration's sections: flat spellings in, sections inside, flat keys logged."""

from __future__ import annotations

import pytest

from arnn.config import FLAT_FIELDS, SECTIONS, TrainConfig, dotted
from arnn.errors import UsageError

FLAT = {
    "task": "adding",
    "task_options": {"length": 8},
    "model": "cornn",
    "hidden": 16,
    "dt": 0.05,
    "optimizer": "adam",
    "lr": 0.003,
    "clip": 1.0,
    "epochs": 4,
    "lr_decay_every": 2,
    "batch_size": 32,
    "val_size": 64,
    "device": "cpu",
    "kernel": "eager",
    "seed": 7,
}


def test_flat_settings_land_in_the_sections_their_readers_think_in():
    config = TrainConfig.parse(FLAT)
    assert set(config.model_dump()) == {*SECTIONS, "seed"}
    assert (config.model.name, config.model.hidden, config.model.options["dt"]) == (
        "cornn",
        16,
        0.05,
    )
    assert (config.task.name, config.task.options["length"]) == ("adding", 8)
    assert (config.optim.name, config.optim.lr, config.optim.clip) == ("adam", 0.003, 1.0)
    assert (config.schedule.epochs, config.schedule.lr_decay_every) == (4, 2)
    assert (config.data.batch_size, config.data.val_size) == (32, 64)
    assert (config.runtime.device, config.runtime.kernel, config.seed) == ("cpu", "eager", 7)


def test_the_nested_dump_and_the_flat_form_read_back_to_the_same_configuration():
    config = TrainConfig.parse(FLAT)
    assert TrainConfig.model_validate(config.model_dump(mode="json")) == config
    assert TrainConfig.parse(config.flat()) == config
    assert config.replace(lr=0.01).optim.lr == 0.01
    assert config.replace(lr=0.01).model == config.model


def test_every_flat_name_is_one_field_of_one_section():
    assert len(set(FLAT_FIELDS.values())) == len(FLAT_FIELDS)
    fields = {(s, f) for s, schema in SECTIONS.items() for f in schema.model_fields}
    assert set(FLAT_FIELDS.values()) == fields


def test_logged_keys_are_flat_and_say_their_section():
    params = dotted(TrainConfig.parse(FLAT).model_dump(mode="json"))
    assert params["optim.lr"] == 0.003 and params["model.dt"] == 0.05
    assert params["model.name"] == "cornn" and params["task.length"] == 8
    assert params["schedule.epochs"] == 4 and params["data.batch_size"] == 32
    assert params["seed"] == 7 and "lr" not in params


def test_a_resumed_run_may_change_its_runtime_and_length_and_nothing_else():
    config = TrainConfig.parse(FLAT)
    moved = config.replace(device="cuda", kernel="auto", data_dir="/elsewhere", epochs=9)
    assert moved.identity() == config.identity()
    for change in (
        {"lr": 0.01},
        {"dt": 0.1},
        {"batch_size": 16},
        {"seed": 8},
        {"lr_decay_every": 3},
    ):
        assert config.replace(**change).identity() != config.identity(), change


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"lr": 0}, "lr: input should be greater than 0, got 0"),
        ({"optimizer": "lbfgs"}, "optimizer: input should be 'sgd', 'adagrad', 'adam' or"),
        ({"epochs": 2, "iterations": 5}, "iterations: give epochs or iterations, not both"),
        ({"kernel": "fused", "hidden": 4096}, "kernel: fused supports hidden sizes up to"),
        ({"colour": "red"}, "colour: unknown setting"),
        ({"model": "lstm", "dt": 1}, "dt: unknown setting"),
        ({"model": "lem", "dt": -1}, "model_options: model lem: option 'dt'"),
    ],
)
def test_a_bad_setting_is_named_by_its_flat_name(values, message):
    with pytest.raises(UsageError) as raised:
        TrainConfig.parse(values)
    assert message in str(raised.value)
