"""The paper's tables with our numbers beside the published ones, read from MLflow.

    python reproduce/table.py                       # Tables 1 and 2 (and the successors)
    python reproduce/table.py --table 1 --format latex --out table1.tex

Cells without finished runs say so, with the command that fills them; "params (ours)" is
the exact count of the model each cell's spec trains, with or without runs. With --out,
also writes a PNG per table (published against ours, with error bars) beside the file;
without it, nothing is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from arnn.budgets import BUDGETS
from arnn.errors import UsageError
from arnn.published import find_table, load_published
from arnn.results import build_rows, plot, render
from arnn.tracking import resolve_tracking_uri, runs_frame

HERE = Path(__file__).resolve().parent
PUBLISHED = HERE / "published.yaml"
SEARCH_SPACES = HERE.parent / "search_spaces"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--table",
        type=int,
        choices=(1, 2, 3),
        action="append",
        help="which table (repeatable; default: all)",
    )
    parser.add_argument("--experiment", default="arnn", help="MLflow experiment (default: arnn)")
    parser.add_argument(
        "--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db"
    )
    parser.add_argument("--format", choices=("markdown", "latex", "csv"), default="markdown")
    parser.add_argument(
        "--budget",
        choices=list(BUDGETS),
        help="show this budget's runs (default: each cell's largest)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="write the tables to this file instead of printing, and a PNG per table beside it",
    )
    parser.add_argument("--no-figure", action="store_true", help="with --out: skip the PNGs")
    args = parser.parse_args(argv)

    try:
        tables = load_published(PUBLISHED)
        chosen = [find_table(tables, i) for i in (args.table or [t.id for t in tables])]
        frame = runs_frame(resolve_tracking_uri(args.tracking_uri), args.experiment)
    except UsageError as error:
        print(f"table.py: error: {error}", file=sys.stderr)
        return 2

    texts = []
    for table in chosen:
        rows = build_rows(table, frame, args.budget, SEARCH_SPACES / table.specs)
        fill = f"python reproduce/run.py --table {table.id} --budget smoke"
        texts.append(render(table, rows, args.format, fill))
        if args.out and not args.no_figure and any(r.published.trainable for r in rows):
            path = args.out.parent / f"table{table.id}.png"
            plot(table, rows, path)
            texts.append(f"figure: {path}\n")
    output = "\n".join(texts)
    if args.out:
        args.out.write_text(output)
        print(f"wrote {args.out}")
    else:
        print(output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
