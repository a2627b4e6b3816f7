"""The model registry: name -> constructor, the single place where a model is added."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from arnn.errors import UsageError


@dataclass(frozen=True)
class ModelEntry:
    name: str
    build: Callable[..., nn.Module]
    description: str
    uses: frozenset[str]  # which of eps / gamma / sigma_w the model reads
    gated_variant: str | None = None  # the model a sweep's `gated: true` turns this one into


_MODELS: dict[str, ModelEntry] = {}


def register_model(
    name: str,
    *,
    description: str,
    uses: tuple[str, ...] = ("sigma_w",),
    gated_variant: str | None = None,
):
    """Decorator that adds a constructor to the registry under `name`."""

    def add(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = ModelEntry(name, build, description, frozenset(uses), gated_variant)
        return build

    return add


def list_models() -> list[str]:
    return sorted(_MODELS)


def model_entry(name: str) -> ModelEntry:
    try:
        return _MODELS[name]
    except KeyError:
        raise UsageError(f"unknown model {name!r}; allowed: {', '.join(list_models())}") from None


def create_model(
    name: str,
    *,
    input_size: int,
    output_size: int,
    hidden: int,
    eps: float = 0.01,
    gamma: float = 0.01,
    sigma_w: float = 1.0,
    kernel: str = "auto",
) -> nn.Module:
    """Build a sequence classifier: x [B, T, input_size] -> outputs [B, output_size]."""
    entry = model_entry(name)
    options = {"eps": eps, "gamma": gamma, "sigma_w": sigma_w, "kernel": kernel}
    chosen = {key: value for key, value in options.items() if key in entry.uses}
    return entry.build(input_size=input_size, output_size=output_size, hidden=hidden, **chosen)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
