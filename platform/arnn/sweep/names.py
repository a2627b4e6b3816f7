"""What runs are called in MLflow, so that a name in the runs table says what a run tried.

t07 gated lr=0.0043 ε=0.1 γ=0.02     a search trial: its number and sampled values
seed 1002                            a final run: its seed
demo-20261128-233500 · demo          a sweep: its name and its spec's
antisymmetric on mnist               an `arnn train` run: model and task
"""

from __future__ import annotations

from typing import Any

# The antisymmetric family's symbols, as the paper writes them.
_SYMBOLS = {"eps": "ε", "gamma": "γ", "sigma_w": "σ_w"}


def short(value: Any, digits: int = 2) -> str:
    """A sampled value in `digits` significant digits: 0.004321 -> 0.0043."""
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def trial_name(number: int | None, sampled: dict[str, Any]) -> str:
    """`t07 gated lr=0.0043 ε=0.1 γ=0.02`: a bool that is true by its name alone (false
    ones are left out), the rest as name=value, in the spec's order."""
    words = [f"t{number + 1:02d}" if number is not None else "trial"]
    for key, value in sampled.items():
        if isinstance(value, bool):
            if value:
                words.append(key)
        else:
            words.append(f"{_SYMBOLS.get(key, key)}={short(value)}")
    return " ".join(words)


def final_name(seed: int) -> str:
    return f"seed {seed}"


def sweep_name(sweep: str, spec: str) -> str:
    return sweep if sweep == spec or sweep.startswith(f"{spec}-") else f"{sweep} · {spec}"


def train_name(model: str, task: str) -> str:
    return f"{model} on {task}"


def counted(count: int, noun: str) -> str:
    """`1 trial`, `2 trials`."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
