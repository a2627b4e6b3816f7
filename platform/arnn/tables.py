"""Every table the project prints, laid out by pandas: on the console, or as markdown,
LaTeX or CSV. Text columns are left-aligned, numbers right-aligned, no index."""

from __future__ import annotations

import pandas as pd


def console(frame: pd.DataFrame, float_format: str = "{:.2f}") -> str:
    """Plain columns two spaces apart, as a terminal shows them."""
    cells, labels = {}, {}
    for place, column in enumerate(frame.columns):
        numeric = pd.api.types.is_numeric_dtype(frame[column]) and not pd.api.types.is_bool_dtype(
            frame[column]
        )
        values = [
            float_format.format(v) if numeric and isinstance(v, float) else str(v)
            for v in frame[column]
        ]
        width = max([len(str(column)), *map(len, values)])
        gap = " " if place else ""  # pandas puts one space between columns: two, with this
        pad = str.rjust if numeric else str.ljust
        labels[column] = gap + pad(str(column), width)
        cells[labels[column]] = [gap + pad(v, width) for v in values]
    text = pd.DataFrame(cells, columns=list(labels.values())).to_string(index=False, justify="left")
    return "\n".join(line.rstrip() for line in text.splitlines())


def markdown(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False, disable_numparse=True)


def latex(frame: pd.DataFrame) -> str:
    """A booktabs tabular; ± and Δ written as LaTeX math."""
    text = frame.to_latex(index=False, escape=True)
    return text.replace("±", r"$\pm$").replace("Δ", r"$\Delta$")


def csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False)
