"""The task registry: name -> (options schema, constructor)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pydantic

from arnn.errors import UsageError
from arnn.tasks._base import Task


class TaskOptions(pydantic.BaseModel):
    """Base of each task's options: unknown keys are errors, values are checked."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class TaskEntry:
    name: str
    build: Callable[[Any], Task]
    options: type[TaskOptions]
    description: str


_TASKS: dict[str, TaskEntry] = {}


def register_task(name: str, *, options: type[TaskOptions], description: str):
    def add(build: Callable[[Any], Task]) -> Callable[[Any], Task]:
        if name in _TASKS:
            raise ValueError(f"task {name!r} is registered twice")
        _TASKS[name] = TaskEntry(name, build, options, description)
        return build

    return add


def list_tasks() -> list[str]:
    return sorted(_TASKS)


def task_entry(name: str) -> TaskEntry:
    try:
        return _TASKS[name]
    except KeyError:
        raise UsageError(f"unknown task {name!r}; allowed: {', '.join(list_tasks())}") from None


def validate_task_options(name: str, options: dict[str, Any]) -> TaskOptions:
    """Options checked against the task's schema; every problem in one UsageError line."""
    entry = task_entry(name)
    try:
        return entry.options.model_validate(options)
    except pydantic.ValidationError as error:
        problems = []
        for item in error.errors():
            key = ".".join(str(part) for part in item["loc"])
            allowed = ", ".join(entry.options.model_fields) or "none"
            if item["type"] == "extra_forbidden":
                problems.append(f"unknown option {key!r} (allowed: {allowed})")
            else:
                problems.append(f"option {key!r}: {item['msg']}, got {item['input']!r}")
        raise UsageError(f"task {name}: " + "; ".join(problems)) from None


def create_task(name: str, options: dict[str, Any] | TaskOptions | None = None) -> Task:
    entry = task_entry(name)
    if not isinstance(options, TaskOptions):
        options = validate_task_options(name, options or {})
    return entry.build(options)
