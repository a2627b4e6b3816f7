"""The published tables (reproduce/published.yaml): what our numbers are set beside."""

from __future__ import annotations

from pathlib import Path

import pydantic
import yaml

from arnn.errors import UsageError


class PublishedRow(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    method: str
    model: str | None = None  # our model when we can train the row; None for cited rows
    units: int | str
    params: str | None
    accuracy: dict[str, float | None]
    note: str | None = None

    @property
    def trainable(self) -> bool:
        return self.model is not None


class PublishedTable(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    id: int
    title: str
    source: str
    specs: str = "paper"  # search_spaces/<specs>/table<id>_<task>_<model>.yaml per cell
    tasks: dict[str, str]  # task -> column heading
    rows: list[PublishedRow]

    def cells(self) -> list[tuple[PublishedRow, str]]:
        """(row, task) for every trainable cell."""
        return [(row, task) for row in self.rows if row.trainable for task in self.tasks]


def load_published(path: str | Path) -> list[PublishedTable]:
    try:
        raw = yaml.safe_load(Path(path).read_text())
        return [PublishedTable.model_validate(table) for table in raw["tables"]]
    except (OSError, KeyError, TypeError, yaml.YAMLError, pydantic.ValidationError) as error:
        first = str(error).strip().splitlines()[0]
        raise UsageError(f"{path}: not a published-tables file: {first}") from None


def find_table(tables: list[PublishedTable], table_id: int) -> PublishedTable:
    for table in tables:
        if table.id == table_id:
            return table
    raise UsageError(f"--table: {table_id} is not one of {', '.join(str(t.id) for t in tables)}")
