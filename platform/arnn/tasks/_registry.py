"""The task registry: name -> entry (options schema, builder), without torch.

The entries themselves are in arnn.tasks.catalog; a task's code is imported only when it
is built (`create_task`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pydantic

from arnn.registry import Registry

if TYPE_CHECKING:
    from arnn.tasks._base import Task


class TaskOptions(pydantic.BaseModel):
    """Base of each task's options: unknown keys are errors, values are checked."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class TaskEntry:
    """A task, built by the function `build` names ("module:function", a module of
    arnn.tasks) from its
    validated options."""

    name: str
    build: str
    options: type[TaskOptions]
    description: str


TASKS: Registry[TaskEntry] = Registry("task", package=__package__)


def register_task(name: str, *, build: str, options: type[TaskOptions], description: str):
    """Add a task to the registry: `build` names its builder, "module:function" in
    arnn.tasks."""
    TASKS.add(TaskEntry(name, build, options, description))


def list_tasks() -> list[str]:
    return TASKS.names()


def task_entry(name: str) -> TaskEntry:
    return TASKS.get(name)


def validate_task_options(name: str, options: dict[str, Any]) -> TaskOptions:
    """Options checked against the task's schema; every problem in one UsageError line."""
    return TASKS.validate_options(name, options)


def create_task(name: str, options: dict[str, Any] | TaskOptions | None = None) -> Task:
    if not isinstance(options, TaskOptions):
        options = validate_task_options(name, options or {})
    return TASKS.builder(name)(options)
