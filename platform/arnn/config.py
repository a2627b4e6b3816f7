"""The validated configuration of one training run: what flags and sweep specs turn into.

Configuration flows one way: flags or a spec -> `TrainConfig.parse` -> `train(config)`.
Every problem is collected and reported at once, named the way the user wrote it.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pydantic

from arnn.errors import UsageError
from arnn.kernels import FUSED_MAX_HIDDEN, check_fused_fits
from arnn.models import model_entry, validate_model_options
from arnn.tasks import task_entry, validate_task_options

DEFAULT_EPOCHS = 10
# Model options with flags of their own (--eps, --gamma, --sigma-w): short for
# --model-option KEY=VALUE, for whichever model has them.
MODEL_SHORT_FORMS = ("eps", "gamma", "sigma_w")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class TrainConfig(pydantic.BaseModel):
    """Everything that decides what one training run computes."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    # what is learnt
    task: str = pydantic.Field("mnist", description="task name (arnn tasks lists them)")
    task_options: dict[str, Any] = pydantic.Field(
        default_factory=dict, validate_default=True, description="task options, KEY=VALUE"
    )
    model: str = pydantic.Field("antisymmetric", description="model name (arnn models lists them)")
    model_options: dict[str, Any] = pydantic.Field(
        default_factory=dict,
        validate_default=True,
        description="the model's own options, KEY=VALUE (arnn models lists them)",
    )
    hidden: int = pydantic.Field(128, ge=1, description="hidden units n")
    # how
    optimizer: Literal["sgd", "adagrad", "adam", "rmsprop"] = pydantic.Field(
        "sgd", description="sgd (with momentum), adagrad, adam or rmsprop"
    )
    lr: float = pydantic.Field(0.1, gt=0, description="learning rate (> 0)")
    momentum: float = pydantic.Field(
        0.9, ge=0, lt=1, description="momentum for sgd and rmsprop, in [0, 1)"
    )
    weight_decay: float = pydantic.Field(0.0, ge=0, description="L2 weight decay (>= 0)")
    clip: float | None = pydantic.Field(
        None, gt=0, description="clip the gradient norm to this value (> 0; default: no clipping)"
    )
    batch_size: int = pydantic.Field(128, ge=1, description="examples per batch (>= 1)")
    epochs: int | None = pydantic.Field(None, ge=1, description="epochs to train (default 10)")
    iterations: int | None = pydantic.Field(
        None, ge=1, description="optimiser steps to train, instead of epochs"
    )
    lr_decay_every: int | None = pydantic.Field(
        None, ge=1, description="multiply the learning rate by --lr-decay every this many epochs"
    )
    lr_decay: float = pydantic.Field(
        0.1, gt=0, le=1, description="learning-rate decay factor, in (0, 1]"
    )
    seed: int = pydantic.Field(0, description="seed of initialisation, batch order and noise")
    # which data
    subset: int | None = pydantic.Field(
        None, ge=1, description="keep at most N examples of each split, for short runs"
    )
    val_size: int = pydantic.Field(
        5000, ge=1, description="validation examples carved from the training set"
    )
    split_seed: int = pydantic.Field(0, description="seed of the validation split")
    data_dir: Path | None = pydantic.Field(
        None, description="data root (default: $ARNN_DATA_DIR, else ~/.cache/arnn/data)"
    )
    download: bool = pydantic.Field(True, description="download missing data")
    kernel: Literal["auto", "eager", "fused"] = pydantic.Field(
        "auto",
        description="antisymmetric recurrences: fused (Triton, CUDA), eager (PyTorch), or "
        f"auto (fused for float32 on CUDA up to hidden {FUSED_MAX_HIDDEN})",
    )
    device: str = pydantic.Field(
        "auto", description="auto (CUDA when present), cpu, cuda or cuda:N"
    )

    @pydantic.field_validator("model")
    @classmethod
    def _known_model(cls, name: str) -> str:
        with _as_value_error():
            model_entry(name)
        return name

    @pydantic.model_validator(mode="before")
    @classmethod
    def _gather_model_options(cls, values: Any) -> Any:
        """A model's options may be given beside the other settings (`dt: 0.042` in a
        spec's fixed or params, --eps on the command line): they go into model_options,
        where the model's schema checks them."""
        if not isinstance(values, dict):
            return values
        try:
            schema = model_entry(values.get("model", "antisymmetric")).options
        except UsageError:
            return values  # the unknown model is reported by its own validator
        values = dict(values)
        options = dict(values.get("model_options") or {})
        for key in list(values):
            if key in MODEL_SHORT_FORMS or (
                key in schema.model_fields and key not in cls.model_fields
            ):
                options[key] = values.pop(key)
        values["model_options"] = options
        return values

    @pydantic.field_validator("model_options")
    @classmethod
    def _valid_model_options(cls, options: dict, info: pydantic.ValidationInfo) -> dict:
        """Checked against the model's schema, kept typed with every default filled in."""
        if "model" not in info.data:  # the model itself was already reported
            return options
        with _as_value_error():
            return validate_model_options(info.data["model"], options).model_dump(mode="json")

    @pydantic.field_validator("task")
    @classmethod
    def _known_task(cls, name: str) -> str:
        with _as_value_error():
            task_entry(name)
        return name

    @pydantic.field_validator("task_options")
    @classmethod
    def _valid_task_options(cls, options: dict, info: pydantic.ValidationInfo) -> dict:
        """Checked against the task's schema, and kept typed with every default filled in,
        so that runs record (and checkpoints compare) the options that were used."""
        if "task" not in info.data:  # the task itself was already reported
            return options
        with _as_value_error():
            return validate_task_options(info.data["task"], options).model_dump(mode="json")

    @pydantic.field_validator("iterations")
    @classmethod
    def _one_length(cls, iterations: int | None, info: pydantic.ValidationInfo) -> int | None:
        if iterations is not None and info.data.get("epochs") is not None:
            raise ValueError("give epochs or iterations, not both")
        return iterations

    @pydantic.field_validator("kernel")
    @classmethod
    def _kernel_fits(cls, kernel: str, info: pydantic.ValidationInfo) -> str:
        if kernel == "fused" and "hidden" in info.data:
            with _as_value_error():
                check_fused_fits(info.data["hidden"])
        return kernel

    @pydantic.field_validator("device")
    @classmethod
    def _device_form(cls, device: str) -> str:
        if not _DEVICE.match(device):
            raise ValueError(f"must be auto, cpu, cuda or cuda:N, got {device!r}")
        return device

    @pydantic.field_validator("lr", "momentum", "clip", "lr_decay")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @property
    def length(self) -> tuple[str, int]:
        """('iterations', n) or ('epochs', n): how long the run is."""
        if self.iterations is not None:
            return "iterations", self.iterations
        return "epochs", self.epochs or DEFAULT_EPOCHS

    @classmethod
    def parse(cls, values: dict[str, Any], *, label: Callable[[str], str] = str) -> TrainConfig:
        """Validate `values`; every problem in one UsageError line, each key named by `label`."""
        problems = config_problems(values)
        if problems:
            raise UsageError("; ".join(f"{label(field)}: {message}" for field, message in problems))
        return cls.model_validate(values)


def config_problems(values: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, what is wrong) for each problem of a would-be TrainConfig; [] when valid."""
    try:
        TrainConfig.model_validate(values)
    except pydantic.ValidationError as error:
        return [_describe(item) for item in error.errors()]
    return []


def _describe(item: dict) -> tuple[str, str]:
    field = str(item["loc"][0]) if item["loc"] else "configuration"
    if item["type"] == "extra_forbidden":
        return field, "unknown setting"
    message = item["msg"].removeprefix("Value error, ")
    if item["type"] == "value_error":  # our own validators' messages name the value
        return field, message
    return field, f"{message[0].lower()}{message[1:]}, got {item['input']!r}"


@contextlib.contextmanager
def _as_value_error():
    """Registry lookups raise UsageError; pydantic collects ValueErrors with their key."""
    try:
        yield
    except UsageError as error:
        raise ValueError(str(error)) from None


_FLAG_NAMES = {
    "task_options": "--task-option",
    "model_options": "--model-option",
    "download": "--no-download",
}


def flag_label(field: str) -> str:
    """How `arnn train` spells a config field: sigma_w -> --sigma-w."""
    return _FLAG_NAMES.get(field, "--" + field.replace("_", "-"))
