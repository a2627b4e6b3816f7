"""Dynamics of trained runs: eigenvalues of dh_T/dh_0 and ||dL/dh_t|| over t.

    python reproduce/dynamics.py RUN_ID [RUN_ID ...] [--sequences 16] [--data-dir DIR]

Each run gets its plots (artifacts dynamics/eigenvalues.png, dynamics/gradient_norms.png)
and summary metrics (jacobian_eig_modulus_mean, _std, _max, grad_norm_first_over_last)
logged back to it, and the gradient norm curve as the metric dynamics_grad_norm (step t).
With several runs (antisymmetric at several gamma, an LSTM, ...) a comparison of all is
written to --out.
"""

from __future__ import annotations

import argparse
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
        found = {}
        for run_id in args.run_ids:
            label, dynamics = _analyse_run(uri, run_id, args)
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


def _analyse_run(uri: str, run_id: str, args):
    config, state = load_trained(uri, run_id)
    if args.data_dir:
        config = config.replace(data_dir=Path(args.data_dir))
    task = create_task(config.task.name, config.task.options)
    model = build_model(config, task)
    model.load_state_dict(state)
    test = load_data(config.replace(subset=args.sequences), task).test
    stored, targets = next(batches(test, args.sequences))
    inputs = task.to_inputs(stored, torch.Generator().manual_seed(0))
    dynamics = analyse(model, task, inputs, targets, jacobians=args.jacobians)

    options = " ".join(
        f"{k}={v:g}" for k, v in config.model.options.items() if k in ("eps", "gamma")
    )
    label = f"{config.model.name} {options} ({run_id[:8]})"
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
