"""The model registry: name -> entry (options schema, builder), without torch.

The entries themselves are in arnn.models.catalog; a model's network is imported only
when it is built (`create_model`).
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pydantic

from arnn.registry import Registry

if TYPE_CHECKING:
    from torch import nn


class ModelOptions(pydantic.BaseModel):
    """Base of a model's own options (its constants, its integrator, ...): unknown keys are
    errors, values are checked (and finite), each field's description says what it is."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class InitOptions(ModelOptions):
    """The one option of models that only take Appendix C's initialisation."""

    sigma_w: float = pydantic.Field(
        1.0, ge=0, description="std of the recurrent weights is sigma_w / sqrt(n)"
    )


@dataclass(frozen=True)
class ModelEntry:
    """A model: built by the function `build` names ("module:function", a module of
    arnn.models) as
    function(input_size=, output_size=, hidden=, options=<validated options>[, kernel=]):
    `kernel` (auto, eager, fused) only for the models whose recurrence arnn.kernels
    computes."""

    name: str
    build: str
    description: str
    options: type[ModelOptions]
    takes_kernel: bool = False
    # Whether the fused kernels can compute the recurrence with these (validated, dumped)
    # options; None: whenever the model takes a kernel.
    fusable: Callable[[dict[str, Any]], bool] | None = None
    gated_variant: str | None = None  # the model a sweep's `gated: true` turns this one into

    def kernel_choice_applies(self, options: dict[str, Any]) -> bool:
        """Whether `runtime.kernel` chooses how this model, so configured, computes: false
        for PyTorch's own layers and for recurrences only the eager path integrates."""
        return self.takes_kernel and (self.fusable is None or self.fusable(options))


MODELS: Registry[ModelEntry] = Registry("model", package=__package__)
# Names a model's option may not take: the training settings (arnn.config reserves them),
# which flags and specs write beside a model's options in one flat mapping. An option so
# named would be taken for the setting, or the setting for it.
_RESERVED: dict[str, str] = {}  # name -> who reserved it


def reserve_option_names(names: typing.Iterable[str], owner: str) -> None:
    """Refuse these names as model options, for the models registered and to come."""
    for name in names:
        _RESERVED[name] = owner
    for entry in MODELS:
        _check_option_names(entry.name, entry.options)


def _check_option_names(model: str, options: type[ModelOptions]) -> None:
    taken = sorted(set(options.model_fields) & set(_RESERVED))
    if taken:
        owners = ", ".join(f"{name!r} ({_RESERVED[name]})" for name in taken)
        raise ValueError(
            f"model {model!r}: options named like a setting would be mistaken for it: "
            f"{owners}; rename them"
        )


def register_model(
    name: str,
    *,
    build: str,
    description: str,
    options: type[ModelOptions] = InitOptions,
    takes_kernel: bool = False,
    fusable: Callable[[dict[str, Any]], bool] | None = None,
    gated_variant: str | None = None,
) -> None:
    """Add a model to the registry: `build` names its builder, "module:function" in
    arnn.models."""
    _check_option_names(name, options)
    MODELS.add(ModelEntry(name, build, description, options, takes_kernel, fusable, gated_variant))


def list_models() -> list[str]:
    return MODELS.names()


def model_entry(name: str) -> ModelEntry:
    return MODELS.get(name)


def validate_model_options(name: str, options: dict[str, Any]) -> ModelOptions:
    """A model's options checked against its schema; every problem in one UsageError line
    naming the option and what the model accepts."""
    return MODELS.validate_options(name, options)


def describe_options(fields: dict[str, pydantic.fields.FieldInfo]) -> list[str]:
    """Each option as `name=default (allowed)`: for `arnn models` to show what a model takes."""
    described = []
    for name, field in fields.items():
        bounds = []
        for rule in field.metadata:
            for attribute, symbol in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
                value = getattr(rule, attribute, None)
                if value is not None:
                    bounds.append(f"{symbol} {value}")
        choices = typing.get_args(field.annotation)
        if typing.get_origin(field.annotation) is typing.Literal:
            bounds.append(" | ".join(str(c) for c in choices))
        elif field.annotation is bool:
            bounds.append("true | false")
        allowed = f" ({', '.join(bounds)})" if bounds else ""
        described.append(f"{name}={field.default}{allowed}")
    return described


def create_model(
    name: str,
    *,
    input_size: int,
    output_size: int,
    hidden: int,
    kernel: str = "auto",
    model_options: dict[str, Any] | None = None,
    **options: Any,
) -> nn.Module:
    """Build a sequence classifier: x [B, T, input_size] -> outputs [B, output_size].
    The model's options come as `model_options` or as keywords (eps=0.1)."""
    entry = model_entry(name)
    validated = validate_model_options(name, {**(model_options or {}), **options})
    extra = {"kernel": kernel} if entry.takes_kernel else {}
    return MODELS.builder(name)(
        input_size=input_size, output_size=output_size, hidden=hidden, options=validated, **extra
    )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
