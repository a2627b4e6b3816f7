"""Tasks: one registry; `create_task(name, options)` is the way in."""

from arnn.tasks import images, synthetic  # noqa: F401  (they register)
from arnn.tasks._base import Split, Task
from arnn.tasks._registry import (
    TaskOptions,
    create_task,
    list_tasks,
    register_task,
    task_entry,
    validate_task_options,
)

__all__ = [
    "Split",
    "Task",
    "TaskOptions",
    "create_task",
    "list_tasks",
    "register_task",
    "task_entry",
    "validate_task_options",
]
