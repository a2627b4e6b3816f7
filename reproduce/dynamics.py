"""Dynamics of trained runs: eigenvalues of dh_T/dh_0 and ||dL/dh_t|| over t.

    python reproduce/dynamics.py RUN_ID [RUN_ID ...] [--sequences 16] [--data-dir DIR]

Each run gets its plots (artifacts dynamics/eigenvalues.png, dynamics/gradient_norms.png)
and summary metrics (jacobian_eig_modulus_mean, _std, _max, grad_norm_first_over_last)
logged back to it, and the gradient norm curve as the metric dynamics_grad_norm (step t).
With several runs of one task (antisymmetric at several gamma, an LSTM, the IRNN and the
orthogonally initialised RNN, ...) a comparison of all, on the same test sequences, is
written to --out: the eigenvalues one panel per run side by side, the gradient norms on one
axis.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

from arnn.data import batches
from arnn.dynamics import analyse, plot
from arnn.errors import UsageError
from arnn.tasks import create_task
from arnn.tracking import TrackedRun, connect, load_trained, resolve_tracking_uri
from arnn.train import build_model, load_data

LABELLED_OPTIONS = ("eps", "gamma", "init")  # shown in a run's label


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    parser.add_argument("--tracking-uri")
    parser.add_argument("--sequences", type=int, default=16, help="test sequences (default 16)")
    parser.add_argument(
        "--jacobians", type=int, default=4, help="sequences whose Jacobian is taken (default 4)"
    )
    parser.add_argument("--data-dir", help="data root (default: the run's, else the usual)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("dynamics"),
        help="folder for the comparison plots (default ./dynamics)",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = resolve_tracking_uri(args.tracking_uri)

    try:
        trained = {run_id: load_trained(uri, run_id) for run_id in args.run_ids}
        _check_one_batch({run_id: config for run_id, (config, _) in trained.items()})
        found = {}
        for run_id, (config, state) in trained.items():
            label, dynamics = _analyse_run(uri, run_id, config, state, args)
            found[label] = dynamics
            print(f"{label}: " + ", ".join(f"{k} {v:.4g}" for k, v in dynamics.summary().items()))
    except UsageError as error:
        print(f"dynamics.py: error: {error}", file=sys.stderr)
        return 2
    if len(found) > 1:
        args.out.mkdir(parents=True, exist_ok=True)
        plot(found, args.out / "eigenvalues.png", args.out / "gradient_norms.png")
        print(f"comparison: {args.out / 'eigenvalues.png'}, {args.out / 'gradient_norms.png'}")
    return 0


def _check_one_batch(configs: dict) -> None:
    """Runs compared side by side must see the same test sequences: one task, one set of
    task options (the first --sequences test examples of it, the same noise)."""
    tasks = {
        run_id: (config.task.name, json.dumps(config.task.options, sort_keys=True))
        for run_id, config in configs.items()
    }
    if len(set(tasks.values())) > 1:
        listed = ", ".join(
            f"{run_id[:8]} {name} {options}" for run_id, (name, options) in tasks.items()
        )
        raise UsageError(
            f"RUN_ID: the runs compared must share a task and its options, to be analysed on "
            f"the same test sequences; got {listed}"
        )


def _label(config, run_id: str) -> str:
    """The model and the options that tell runs apart in a legend (eps, gamma, init)."""
    shown = [
        f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
        for key, value in config.model.options.items()
        if key in LABELLED_OPTIONS
    ]
    return " ".join([config.model.name, *shown, f"({run_id[:8]})"])


def _analyse_run(uri: str, run_id: str, config, state, args):
    if args.data_dir:
        config = config.replace(data_dir=Path(args.data_dir))
    task = create_task(config.task.name, config.task.options)
    model = build_model(config, task)
    model.load_state_dict(state)
    test = load_data(config.replace(subset=args.sequences), task).test
    stored, targets = next(batches(test, args.sequences))
    inputs = task.to_inputs(stored, torch.Generator().manual_seed(0))
    dynamics = analyse(model, task, inputs, targets, jacobians=args.jacobians)

    label = _label(config, run_id)
    run = TrackedRun(connect(uri), run_id)
    run.log_metrics(dynamics.summary())
    run.log_series("dynamics_grad_norm", dynamics.gradient_norms.tolist())
    with tempfile.TemporaryDirectory() as folder:
        eigen, grads = Path(folder) / "eigenvalues.png", Path(folder) / "gradient_norms.png"
        plot({label: dynamics}, eigen, grads)
        for path in (eigen, grads):
            run.client.log_artifact(run_id, str(path), artifact_path="dynamics")
    return label, dynamics


if __name__ == "__main__":
    raise SystemExit(main())
