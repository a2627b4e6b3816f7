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
from pydantic_core import PydanticCustomError

from arnn.errors import UsageError, value_problem
from arnn.kernel_limits import FUSED_MAX_HIDDEN, check_fused_fits
from arnn.models import model_entry, validate_model_options
from arnn.models._registry import reserve_option_names
from arnn.tasks import task_entry, validate_task_options

DEFAULT_EPOCHS = 10
# Model options with flags of their own (--eps, --gamma, --sigma-w): short for
# --model-option KEY=VALUE, for whichever model has them.
MODEL_SHORT_FORMS = ("eps", "gamma", "sigma_w")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class _Section(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class ModelSection(_Section):
    """Which network, how wide, and its own options (each model's schema checks them)."""

    name: str = pydantic.Field("antisymmetric", description="model name (arnn models lists them)")
    hidden: int = pydantic.Field(128, ge=1, description="hidden units n")
    options: dict[str, Any] = pydantic.Field(
        default_factory=dict,
        validate_default=True,
        description="the model's own options, KEY=VALUE (arnn models lists them)",
    )

    @pydantic.field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        with _as_value_error():
            model_entry(name)
        return name

    @pydantic.field_validator("options")
    @classmethod
    def _valid_options(cls, options: dict, info: pydantic.ValidationInfo) -> dict:
        """Checked against the model's schema, kept typed with every default filled in."""
        if "name" not in info.data:  # the model itself was already reported
            return options
        with _as_value_error():
            return validate_model_options(info.data["name"], options).model_dump(mode="json")


class TaskSection(_Section):
    """What is learnt: the task and its options (each task's schema checks them)."""

    name: str = pydantic.Field("mnist", description="task name (arnn tasks lists them)")
    options: dict[str, Any] = pydantic.Field(
        default_factory=dict, validate_default=True, description="task options, KEY=VALUE"
    )

    @pydantic.field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        with _as_value_error():
            task_entry(name)
        return name

    @pydantic.field_validator("options")
    @classmethod
    def _valid_options(cls, options: dict, info: pydantic.ValidationInfo) -> dict:
        """Checked against the task's schema, and kept typed with every default filled in,
        so that runs record (and checkpoints compare) the options that were used."""
        if "name" not in info.data:  # the task itself was already reported
            return options
        with _as_value_error():
            return validate_task_options(info.data["name"], options).model_dump(mode="json")


class OptimSection(_Section):
    """The optimiser and what each step does with the gradient."""

    name: Literal["sgd", "adagrad", "adam", "rmsprop"] = pydantic.Field(
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

    @pydantic.field_validator("lr", "momentum", "clip")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        return _check_finite(value)


class ScheduleSection(_Section):
    """How long a run trains, and how its learning rate decays."""

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

    @pydantic.field_validator("iterations")
    @classmethod
    def _one_length(cls, iterations: int | None, info: pydantic.ValidationInfo) -> int | None:
        if iterations is not None and info.data.get("epochs") is not None:
            raise ValueError("give epochs or iterations, not both")
        return iterations

    @pydantic.field_validator("lr_decay")
    @classmethod
    def _finite(cls, value: float) -> float:
        return _check_finite(value)

    @property
    def length(self) -> tuple[str, int]:
        """('iterations', n) or ('epochs', n): how long the run is."""
        if self.iterations is not None:
            return "iterations", self.iterations
        return "epochs", self.epochs or DEFAULT_EPOCHS


class DataSection(_Section):
    """Which examples, in which batches."""

    batch_size: int = pydantic.Field(128, ge=1, description="examples per batch (>= 1)")
    subset: int | None = pydantic.Field(
        None, ge=1, description="keep at most N examples of each split, for short runs"
    )
    val_size: int = pydantic.Field(
        5000, ge=1, description="validation examples carved from the training set"
    )
    split_seed: int = pydantic.Field(0, description="seed of the validation split")


class RuntimeSection(_Section):
    """Where and how a run computes, never what: a checkpoint resumes across any change here."""

    device: str = pydantic.Field(
        "auto", description="auto (CUDA when present), cpu, cuda or cuda:N"
    )
    kernel: Literal["auto", "eager", "fused"] = pydantic.Field(
        "auto",
        description="antisymmetric recurrences: fused (Triton, CUDA), eager (PyTorch), or "
        f"auto (fused for float32 on CUDA up to hidden {FUSED_MAX_HIDDEN})",
    )
    data_dir: Path | None = pydantic.Field(
        None, description="data root (default: $ARNN_DATA_DIR, else ~/.cache/arnn/data)"
    )
    download: bool = pydantic.Field(True, description="download missing data")

    @pydantic.field_validator("device")
    @classmethod
    def _device_form(cls, device: str) -> str:
        if not _DEVICE.match(device):
            raise ValueError(f"must be auto, cpu, cuda or cuda:N, got {device!r}")
        return device


SECTIONS: dict[str, type[_Section]] = {
    "model": ModelSection,
    "task": TaskSection,
    "optim": OptimSection,
    "schedule": ScheduleSection,
    "data": DataSection,
    "runtime": RuntimeSection,
}
# Flags, sweep specs and checkpoints of old write one flat mapping; each flat name is its
# section's field name, except the sections' `name` and `options`, which read better so.
_FLAT_SPELLING = {
    ("model", "name"): "model",
    ("model", "options"): "model_options",
    ("task", "name"): "task",
    ("task", "options"): "task_options",
    ("optim", "name"): "optimizer",
}
FLAT_FIELDS: dict[str, tuple[str, str]] = {
    _FLAT_SPELLING.get((section, field), field): (section, field)
    for section, schema in SECTIONS.items()
    for field in schema.model_fields
}
FLAT_NAME = {place: flat for flat, place in FLAT_FIELDS.items()}
# A model's options sit beside these names in the flat mapping (`momentum: 0.9`, `dt: 0.04`):
# no model may declare an option that one of them would be taken for.
reserve_option_names({*FLAT_FIELDS, "seed"}, owner="a training setting of arnn.config")


class TrainConfig(_Section):
    """Everything that decides what one training run computes, in the sections its
    readers think in. Built from the flat mapping that flags and specs write
    (`TrainConfig.parse`), or from its own nested dump."""

    model: ModelSection = pydantic.Field(default_factory=ModelSection)
    task: TaskSection = pydantic.Field(default_factory=TaskSection)
    optim: OptimSection = pydantic.Field(default_factory=OptimSection)
    schedule: ScheduleSection = pydantic.Field(default_factory=ScheduleSection)
    data: DataSection = pydantic.Field(default_factory=DataSection)
    runtime: RuntimeSection = pydantic.Field(default_factory=RuntimeSection)
    seed: int = pydantic.Field(0, description="seed of initialisation, batch order and noise")

    @pydantic.model_validator(mode="before")
    @classmethod
    def _from_flat(cls, values: Any) -> Any:
        """Flat names go into their sections; a model's options may be given beside the
        other settings (`dt: 0.042` in a spec's fixed or params, --eps on the command line)."""
        if not isinstance(values, dict) or _is_nested(values):
            return values
        model = values.get("model", ModelSection.model_fields["name"].default)
        option_names = _option_names(model) | set(MODEL_SHORT_FORMS)
        nested: dict[str, Any] = {}
        beside: dict[str, Any] = {}
        for key, value in values.items():
            if key in FLAT_FIELDS:
                section, field = FLAT_FIELDS[key]
                nested.setdefault(section, {})[field] = value
            elif key in option_names:
                beside[key] = value
            else:
                nested[key] = value  # `seed`, or an unknown key, reported as such
        if beside:
            model_section = nested.setdefault("model", {})
            model_section["options"] = {**(model_section.get("options") or {}), **beside}
        return nested

    @pydantic.model_validator(mode="after")
    def _kernel_fits(self) -> TrainConfig:
        if self.runtime.kernel == "fused":
            try:
                check_fused_fits(self.model.hidden)
            except UsageError as error:
                raise PydanticCustomError(
                    "across_sections", "{message}", {"field": "kernel", "message": str(error)}
                ) from None
        return self

    @property
    def length(self) -> tuple[str, int]:
        return self.schedule.length

    def flat(self) -> dict[str, Any]:
        """The flat mapping that `parse` takes back (JSON values)."""
        dump = self.model_dump(mode="json")
        values = {flat: dump[section][field] for flat, (section, field) in FLAT_FIELDS.items()}
        return {**values, "seed": self.seed}

    def replace(self, **changes: Any) -> TrainConfig:
        """This configuration with some flat settings changed, validated again."""
        return TrainConfig.model_validate({**self.flat(), **changes})

    def identity(self) -> dict[str, Any]:
        """What a checkpoint must match to be resumed: everything but the runtime section
        and the run's length (a resumed run may be extended)."""
        dump = self.model_dump(mode="json", exclude={"runtime"})
        dump["schedule"] = {
            k: v for k, v in dump["schedule"].items() if k not in ("epochs", "iterations")
        }
        return dump

    @classmethod
    def parse(cls, values: dict[str, Any], *, label: Callable[[str], str] = str) -> TrainConfig:
        """Validate flat `values`; every problem in one UsageError line, each key named
        by `label`."""
        problems = config_problems(values)
        if problems:
            raise UsageError("; ".join(f"{label(field)}: {message}" for field, message in problems))
        return cls.model_validate(values)


def dotted(sections: dict[str, Any]) -> dict[str, Any]:
    """Sections as flat, readable keys, the way runs log them: {'optim': {'lr': 0.1}}
    -> {'optim.lr': 0.1}; a section's options beside its fields ('model.dt')."""
    flat: dict[str, Any] = {}
    for section, values in sections.items():
        if not isinstance(values, dict):
            flat[section] = values  # seed
            continue
        named = {k: v for k, v in values.items() if k != "options"}
        for key, value in [*named.items(), *values.get("options", {}).items()]:
            if f"{section}.{key}" in flat:  # an option named like its section's field
                raise ValueError(f"{section}.{key} is both a setting and an option")
            flat[f"{section}.{key}"] = value
    return flat


def _is_nested(values: dict) -> bool:
    """A dump of sections (`model: {name: lstm}`), not the flat mapping (`model: lstm`)."""
    return all(
        key == "seed" or (key in SECTIONS and isinstance(value, dict))
        for key, value in values.items()
    )


def _option_names(model: Any) -> set[str]:
    try:
        schema = model_entry(model).options
    except (UsageError, TypeError):
        return set()  # the unknown model is reported by its section
    return set(schema.model_fields)


def _check_finite(value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def config_problems(values: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, what is wrong) for each problem of a would-be TrainConfig; [] when valid."""
    try:
        TrainConfig.model_validate(values)
    except pydantic.ValidationError as error:
        return [_describe(item) for item in error.errors()]
    return []


def _describe(item: dict) -> tuple[str, str]:
    """(flat field, message) of one pydantic error: ('optim', 'lr') is named lr."""
    if item["type"] == "across_sections":
        return item["ctx"]["field"], item["ctx"]["message"]
    loc = tuple(str(part) for part in item["loc"])
    field = FLAT_NAME.get(loc[:2], ".".join(loc) or "configuration")
    if item["type"] == "extra_forbidden":
        return field, "unknown setting"
    return field, value_problem(item)


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
