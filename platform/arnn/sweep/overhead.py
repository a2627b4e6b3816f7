"""What the platform costs per trial: `python -m arnn.sweep.overhead`.

Runs a sweep of trivially small trials (the adding problem, a tiny model, one epoch) on
an embedded Ray with a SQLite MLflow store in a temporary folder, and prints

    overhead per trial = (sweep wall time - the trials' own training time) / trials

where a trial's own training time is the wall time of its `train(...)` call, logged by the
trial as `train_seconds`. Everything else (starting Ray, the trial processes, Optuna,
MLflow runs, checkpoints, the driver's bookkeeping) is overhead. Trials run one at a time
so that the two times add up.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
from pathlib import Path

import yaml


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--concurrent", type=int, default=1)
    args = parser.parse_args(argv)

    from mlflow.tracking import MlflowClient

    from arnn.sweep.driver import sweep

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        spec = folder / "overhead.yaml"
        spec.write_text(
            yaml.safe_dump(
                {
                    "name": "overhead",
                    "task": "adding",
                    "task_options": {"length": 10, "train_size": 256, "test_size": 64},
                    "model": "antisymmetric",
                    "fixed": {"hidden": 4, "epochs": 1, "val_size": 64, "batch_size": 64},
                    "params": {"lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True}},
                    "scheduler": {"type": "none"},
                    "num_samples": args.trials,
                    "max_concurrent": args.concurrent,
                }
            )
        )
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        os.chdir(folder)
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            outcome = sweep(
                str(spec), name="overhead", tracking_uri=uri, storage_path=str(folder / "ray")
            )
        wall = time.perf_counter() - started
        client = MlflowClient(uri)
        runs = [client.get_run(record.run_id) for record in outcome.trials]
        own = sum(run.data.metrics["train_seconds"] for run in runs)

    overhead = (wall - own / args.concurrent) / args.trials
    print(f"{args.trials} trials, {args.concurrent} at a time, {os.cpu_count()} CPUs")
    print(f"sweep wall time        {wall:8.1f} s")
    print(f"trials' own training   {own:8.1f} s")
    print(f"overhead per trial     {overhead:8.2f} s   (target: at most 2 s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
