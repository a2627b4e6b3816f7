"""One registry per kind of named, configurable thing (models, tasks): name -> entry, each
entry with its own options schema, and one way to refuse an unknown name or a bad option.

The kinds keep their own entry types (`arnn.models._registry.ModelEntry`,
`arnn.tasks._registry.TaskEntry`) and decorators; what they share lives here.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any, Generic, Protocol, TypeVar

import pydantic

from arnn.errors import UsageError, value_problem


class Entry(Protocol):
    name: str
    options: type[pydantic.BaseModel]


E = TypeVar("E", bound=Entry)


class Registry(Generic[E]):
    """The entries of one kind (`kind` names it in messages: 'unknown model ...')."""

    def __init__(self, kind: str, package: str):
        self.kind = kind
        self.package = package  # where its builders' modules are ("module:function")
        self._entries: dict[str, E] = {}

    def add(self, entry: E) -> None:
        if entry.name in self._entries:
            raise ValueError(f"{self.kind} {entry.name!r} is registered twice")
        self._entries[entry.name] = entry

    def remove(self, name: str) -> None:
        """Take an entry out again (a scratch entry a test registered)."""
        del self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __iter__(self) -> Iterator[E]:
        return iter(self._entries.values())

    def get(self, name: str) -> E:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UsageError(
                f"unknown {self.kind} {name!r}; allowed: {', '.join(self.names())}"
            ) from None

    def validate_options(self, name: str, options: dict[str, Any]) -> pydantic.BaseModel:
        """`options` checked against the entry's schema; every problem in one UsageError
        line naming the option and what the entry accepts."""
        schema = self.get(name).options
        try:
            return schema.model_validate(options)
        except pydantic.ValidationError as error:
            allowed = ", ".join(schema.model_fields) or "none"
            problems = []
            for item in error.errors():
                key = ".".join(str(part) for part in item["loc"])
                if item["type"] == "extra_forbidden":
                    problems.append(f"unknown option {key!r} (allowed: {allowed})")
                else:
                    problems.append(f"option {key!r}: {value_problem(item, keep_case=True)}")
            raise UsageError(f"{self.kind} {name}: " + "; ".join(problems)) from None

    def builder(self, name: str) -> Any:
        """The function that builds entry `name` ("module:function": a module of this
        registry's package, or any other by its dotted path), imported on first use: how
        the registries reach the code, and torch, only when something is built."""
        module, _, function = self.get(name).build.partition(":")
        where = module if "." in module else f"{self.package}.{module}"
        return getattr(importlib.import_module(where), function)
