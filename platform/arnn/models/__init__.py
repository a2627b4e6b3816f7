"""Models: one registry (arnn.models.catalog lists them), one module per family.
`create_model(name, ...)` is the way in; importing this package loads no torch."""

from arnn.models import catalog  # noqa: F401  (it registers every model)
from arnn.models._registry import (
    InitOptions,
    ModelOptions,
    count_parameters,
    create_model,
    list_models,
    model_entry,
    register_model,
    validate_model_options,
)

__all__ = [
    "InitOptions",
    "ModelOptions",
    "count_parameters",
    "create_model",
    "list_models",
    "model_entry",
    "register_model",
    "validate_model_options",
]
