"""Figure 1: the eight 2-D phase portraits, one PNG (after Chang et al., 2019).

    python reproduce/figure1.py --out figure1.png [--tracking-uri URI]

With a tracking URI (or $MLFLOW_TRACKING_URI) the PNG is also logged to MLflow as the
artifact of a run named figure1.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from arnn import record
from arnn.phase import draw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("figure1.png"))
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"))
    parser.add_argument("--experiment", default="arnn")
    args = parser.parse_args(argv)

    draw(args.out)
    print(f"wrote {args.out}")
    if args.tracking_uri:
        from arnn.tracking import TrackedRun

        run = TrackedRun.start(
            tracking_uri=args.tracking_uri,
            experiment=args.experiment,
            run_name="figure1",
            tags={record.KIND: record.FIGURE_RUN},
        )
        run.client.log_artifact(run.run_id, str(args.out), artifact_path="figures")
        run.finish()
        print(f"logged to MLflow run {run.run_id}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
