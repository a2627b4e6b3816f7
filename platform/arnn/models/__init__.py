"""Models: one registry, one module per family. `create_model(name, ...)` is the way in."""

from arnn.models import (  # noqa: F401  (they register)
    antisymmetric,
    classic,
    cornn,
    fastrnn,
    lem,
    lipschitz,
    unicornn,
)
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
