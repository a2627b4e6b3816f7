"""How much of the paper's protocol a reproduction spends: smoke, quick or paper.

One place for the names and their sizes: reproduce/run.py spends a budget, and
reproduce/table.py shows each cell's largest budget that has runs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    """None keeps the spec's own value."""

    name: str
    subset: int | None
    epochs: int | None
    samples: int | None
    final_epochs: int | None
    cpu_only: bool


BUDGETS = {  # smallest first
    # minutes on a laptop CPU: the whole path, tiny numbers
    "smoke": Budget("smoke", subset=512, epochs=2, samples=2, final_epochs=2, cpu_only=True),
    # an hour or so on a GPU: real but short training
    "quick": Budget("quick", subset=10_000, epochs=5, samples=12, final_epochs=10, cpu_only=False),
    # the paper's iteration counts and full grids
    "paper": Budget(
        "paper", subset=None, epochs=None, samples=None, final_epochs=None, cpu_only=False
    ),
}
