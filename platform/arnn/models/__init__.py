"""Models: one registry, one module per family. `create_model(name, ...)` is the way in."""

from arnn.models import antisymmetric, classic, fastrnn  # noqa: F401  (they register)
from arnn.models._registry import (
    count_parameters,
    create_model,
    list_models,
    model_entry,
    register_model,
)

__all__ = ["count_parameters", "create_model", "list_models", "model_entry", "register_model"]
