"""The task registry: name -> (options schema, constructor)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pydantic

from arnn.registry import Registry
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


TASKS: Registry[TaskEntry] = Registry("task")


def register_task(name: str, *, options: type[TaskOptions], description: str):
    def add(build: Callable[[Any], Task]) -> Callable[[Any], Task]:
        TASKS.add(TaskEntry(name, build, options, description))
        return build

    return add


def list_tasks() -> list[str]:
    return TASKS.names()


def task_entry(name: str) -> TaskEntry:
    return TASKS.get(name)


def validate_task_options(name: str, options: dict[str, Any]) -> TaskOptions:
    """Options checked against the task's schema; every problem in one UsageError line."""
    return TASKS.validate_options(name, options)


def create_task(name: str, options: dict[str, Any] | TaskOptions | None = None) -> Task:
    entry = task_entry(name)
    if not isinstance(options, TaskOptions):
        options = validate_task_options(name, options or {})
    return entry.build(options)
