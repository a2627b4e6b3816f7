"""Tasks: one registry (arnn.tasks.catalog lists them); `create_task(name, options)` is
the way in; importing this package loads no torch (arnn.tasks._base has Split and Task)."""

from arnn.tasks import catalog  # noqa: F401  (it registers every task)
from arnn.tasks._registry import (
    TaskOptions,
    create_task,
    list_tasks,
    register_task,
    task_entry,
    validate_task_options,
)

__all__ = [
    "TaskOptions",
    "create_task",
    "list_tasks",
    "register_task",
    "task_entry",
    "validate_task_options",
]
