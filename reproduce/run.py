"""Fill one of the published tables: a search sweep per trainable cell (the row's spec from
search_spaces/paper/, or search_spaces/successors/ for Table 3), the best trial by
validation accuracy, then --seeds final runs.

    python reproduce/run.py --table 1 --budget smoke     # minutes on a laptop CPU
    python reproduce/run.py --table 3 --budget smoke     # the successors, one protocol
    python reproduce/run.py --table 2 --budget paper --address auto \\
        --storage-path s3://BUCKET/arnn/ray --tracking-uri http://HEAD:5000

Re-running finishes whatever is partial: cells that MLflow holds complete are skipped, an
interrupted or failed search is resumed, missing final seeds are added. Ctrl-C (or SIGTERM)
stops at the cell it interrupts, with exit code 130 (143). Then: reproduce/table.py.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from arnn.budgets import BUDGETS
from arnn.errors import UsageError
from arnn.interrupt import Interrupted, StopSignals
from arnn.published import find_table, load_published
from arnn.reproduction import Cell, run_cell
from arnn.sweep.driver import check_tracking_reachable
from arnn.sweep.request import add_flags
from arnn.tracking import absolute_tracking_uri, resolve_tracking_uri

HERE = Path(__file__).resolve().parent
PUBLISHED = HERE / "published.yaml"
SEARCH_SPACES = HERE.parent / "search_spaces"
# The sweeps' options run.py takes (arnn.sweep.request: the same flags as `arnn sweep`):
# the tracking store and experiment it reads cells from, and where each sweep runs.
PASSED_THROUGH = ("address", "tracking_uri", "experiment", "storage_path", "data_dir")
SWEEP_OPTIONS = ("address", "storage_path", "data_dir")  # the rest run_cell takes itself


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=int, choices=(1, 2, 3), required=True)
    parser.add_argument("--budget", choices=list(BUDGETS), default="smoke")
    parser.add_argument("--seeds", type=int, default=3, help="final runs per cell (default 3)")
    parser.add_argument("--task", action="append", help="only these tasks (repeatable)")
    parser.add_argument("--model", action="append", help="only these rows' models (repeatable)")
    add_flags(parser, only=PASSED_THROUGH)
    args = parser.parse_args(argv)
    again = _this_command(sys.argv[1:] if argv is None else argv)

    try:
        if args.seeds < 1:
            raise UsageError(f"--seeds: must be >= 1, got {args.seeds}")
        table = find_table(load_published(PUBLISHED), args.table)
        cells = [
            Cell(table.id, row, task)
            for row, task in table.cells()
            if (not args.task or task in args.task) and (not args.model or row.model in args.model)
        ]
        uri = absolute_tracking_uri(resolve_tracking_uri(args.tracking_uri))
        check_tracking_reachable(args.address, uri)
        gpus = _has_gpus(args.address)
        with StopSignals():
            for number, cell in enumerate(cells, 1):
                print(
                    f"[{number}/{len(cells)}] {cell.row.method} on {cell.task} ({args.budget})",
                    flush=True,
                )
                try:
                    outcome = run_cell(
                        cell,
                        spec_dir=SEARCH_SPACES / table.specs,
                        budget=BUDGETS[args.budget],
                        seeds=args.seeds,
                        gpus=gpus,
                        tracking_uri=uri,
                        experiment=args.experiment,
                        sweep_options={
                            **{name: getattr(args, name) for name in SWEEP_OPTIONS},
                            "resume_command": again,  # what an interrupted sweep says
                        },
                    )
                except Interrupted as stopped:
                    print(
                        f"[{number}/{len(cells)}] {cell.name}: interrupted by {stopped.name}; "
                        f"go on from here with: {again}",
                        flush=True,
                    )
                    return stopped.exit_code
                print(f"[{number}/{len(cells)}] {cell.name}: {outcome}", flush=True)
    except UsageError as error:
        print(f"run.py: error: {error}", file=sys.stderr)
        return 2
    except Interrupted as stopped:
        print(f"run.py: interrupted by {stopped.name}", file=sys.stderr)
        return stopped.exit_code
    print(f"\nnow: python reproduce/table.py --table {args.table}")
    return 0


def _this_command(argv: list[str]) -> str:
    """This script's command line, which goes on from wherever it stopped: the Python
    and the script as paths from here (absolute where outside it), the same arguments."""
    return shlex.join([_from_here(sys.executable), _from_here(__file__), *argv])


def _from_here(path: str) -> str:
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def _has_gpus(address: str) -> bool:
    """Whether trials may ask for GPUs: a cluster is trusted to have them, this machine is
    asked."""
    if address != "local":
        return True
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    raise SystemExit(main())
