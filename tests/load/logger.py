"""One load-test logger: what a sweep trial sends to the tracking server.

    python -m tests.load.logger TRACKING_URI EXPERIMENT_ID INDEX EPOCHS DEADLINE

A run, one log_batch of 10 params, one log_batch of 6 metrics per epoch, then the run
terminated FINISHED. Values are a function of (index, epoch, key), so a request the client
sends again after a timeout carries the same points. Past DEADLINE (time.time()) it stops
and exits 3 without terminating the run, so a stalled server shows as runs left RUNNING.
"""

from __future__ import annotations

import sys
import time

PARAMS = 10
METRICS = 6


def main(uri: str, experiment_id: str, index: int, epochs: int, deadline: float) -> int:
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    started = time.monotonic()
    client = MlflowClient(uri)
    run = client.create_run(experiment_id, run_name=f"logger-{index:03d}")
    run_id = run.info.run_id
    client.log_batch(run_id, params=[Param(f"p{k}", str(index * 100 + k)) for k in range(PARAMS)])
    for epoch in range(epochs):
        if time.time() > deadline:
            print(f"deadline passed at epoch {epoch} of {epochs}", flush=True)
            return 3
        now = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[
                Metric(f"m{k}", index + epoch / 1000 + k / 10, now, epoch) for k in range(METRICS)
            ],
        )
    client.set_terminated(run_id, "FINISHED")
    print(f"ok {run_id} {time.monotonic() - started:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    uri, experiment_id, index, epochs, deadline = sys.argv[1:6]
    sys.exit(main(uri, experiment_id, int(index), int(epochs), float(deadline)))
