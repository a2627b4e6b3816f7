"""A model's options share one flat mapping with the training settings (flags, a spec's
`fixed:`): an option named like a setting could be routed to the wrong place, so no model
may declare one."""

from __future__ import annotations

import pydantic
import pytest

import arnn.config  # noqa: F401  (reserves the settings' names)
from arnn.models import ModelOptions, list_models, register_model


@pytest.mark.parametrize("setting", ["momentum", "clip", "epochs", "seed", "lr", "hidden"])
def test_a_model_option_named_like_a_setting_is_refused_when_it_registers(setting):
    options = pydantic.create_model(
        f"Scratch_{setting}", __base__=ModelOptions, **{setting: (float, 0.5)}
    )
    with pytest.raises(ValueError, match=rf"options named like a setting .*{setting!r}"):
        register_model(f"scratch_{setting}", build="x:y", description="scratch", options=options)
    assert f"scratch_{setting}" not in list_models()


def test_a_model_option_of_its_own_name_registers():
    class Options(ModelOptions):
        stiffness: float = 1.0

    register_model("scratch_stiff", build="x:y", description="scratch", options=Options)
    try:
        assert "scratch_stiff" in list_models()
    finally:
        from arnn.models._registry import MODELS

        MODELS.remove("scratch_stiff")
