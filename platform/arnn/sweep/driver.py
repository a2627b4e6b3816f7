"""`arnn sweep SPEC`: validate, open the sweep's MLflow run, run it on Ray, summarise."""

from __future__ import annotations

import datetime
import os
import sys
import tempfile
from pathlib import Path

import yaml

from arnn.data import DATA_DIR_ENV, resolve_data_dir
from arnn.errors import UsageError
from arnn.sweep.space import num_trials
from arnn.sweep.spec import Spec, load_spec
from arnn.sweep.tune import (
    KIND_TAG,
    SWEEP_TAG,
    SweepOutcome,
    SweepSettings,
    can_resume,
    check_address,
    run_sweep,
)
from arnn.tasks import create_task
from arnn.tracking import STATUS_TAG, TrackedRun, absolute_tracking_uri, resolve_tracking_uri

DEFAULT_STORAGE = "ray_results"


def sweep(
    spec: Spec | str | Path,
    *,
    name: str | None = None,
    samples: int | None = None,
    address: str = "local",
    tracking_uri: str | None = None,
    storage_path: str | None = None,
    resume: bool = False,
    max_concurrent: int | None = None,
    data_dir: str | None = None,
    experiment: str = "arnn",
    tags: dict[str, str] | None = None,
) -> SweepOutcome:
    """Run (or resume) a sweep: a Spec, or the path of its YAML file. Every check happens
    before Ray starts. `tags` go on the sweep's MLflow run and on every trial's."""
    spec_file = None if isinstance(spec, Spec) else Path(spec)
    if spec_file is not None:
        spec = load_spec(spec_file)
    if samples is not None and samples < 1:
        raise UsageError(f"--samples: must be >= 1, got {samples}")
    if max_concurrent is not None and max_concurrent < 1:
        raise UsageError(f"--max-concurrent: must be >= 1, got {max_concurrent}")
    if resume and name is None:
        raise UsageError("--resume: name the sweep to resume with --name")
    check_address(address)
    name = name or f"{spec.name}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    if data_dir is None and address == "local":
        # Trials run in folders of their own: a relative $ARNN_DATA_DIR means this one.
        data_dir = os.environ.get(DATA_DIR_ENV) or None
    if data_dir is not None:
        data_dir = str(Path(data_dir).expanduser().resolve())
    settings = SweepSettings(
        name=name,
        spec=spec,
        tracking_uri=absolute_tracking_uri(resolve_tracking_uri(tracking_uri)),
        experiment=experiment,
        storage_path=_storage(storage_path),
        address=address,
        samples=samples,
        max_concurrent=max_concurrent,
        data_dir=data_dir,
        resume=resume,
        tags=tuple(sorted((tags or {}).items())),
    )
    exists = can_resume(settings)
    if resume and not exists:
        raise UsageError(f"--resume: no sweep {name!r} under {settings.storage_path}")
    if not resume and exists:
        raise UsageError(
            f"--name: sweep {name!r} exists under {settings.storage_path}; "
            "add --resume to finish it, or choose another name"
        )
    if address == "local":
        _check_data(spec, data_dir)
    total = num_trials(spec, samples)
    parent = _parent_run(settings, total, spec_file)
    settings = SweepSettings(**{**settings.__dict__, "parent_run_id": parent.run_id})
    print(
        f"sweep {name}: {total} trials of {spec.task} / {spec.model}, at most "
        f"{max_concurrent or spec.max_concurrent} at once; MLflow run {parent.run_id} "
        f"in {settings.tracking_uri}",
        flush=True,
    )
    try:
        outcome = run_sweep(settings, total)
    except KeyboardInterrupt:
        parent.finish("KILLED")
        raise
    except BaseException:
        parent.finish("FAILED")
        raise
    outcome.counts = _close_leftovers(parent, settings)
    _summarise(parent, outcome, spec.metric)
    if outcome.every_trial_failed:
        errors = [row["error"] for row in outcome.trials if row["error"]]
        first = errors[0] if errors else "no error recorded"
        print(f"every trial failed; the first: {first}", file=sys.stderr)
        parent.finish("FAILED")
        return outcome
    parent.finish("FINISHED")
    return outcome


def _check_data(spec, data_dir: str | None) -> None:
    """On this machine the trials read the data from here: missing data ends the sweep
    before Ray starts (and is downloaded here once, where the network allows)."""
    config = spec.base_config()
    create_task(config.task, config.task_options).load(
        resolve_data_dir(data_dir or config.data_dir), download=config.download
    )


def _storage(flag: str | None) -> str:
    chosen = flag or os.environ.get("ARNN_STORAGE_PATH") or DEFAULT_STORAGE
    if "://" in chosen:  # s3://, gs://: shared storage for a cluster
        return chosen
    return str(Path(chosen).expanduser().resolve())


def _parent_run(settings: SweepSettings, total: int, spec_file: Path | None) -> TrackedRun:
    tags = {SWEEP_TAG: settings.name, KIND_TAG: "sweep"}
    if settings.resume:
        run = TrackedRun.find(
            tracking_uri=settings.tracking_uri, experiment=settings.experiment, tags=tags
        )
        if run is not None:
            run.reopen()
            return run
    spec = settings.spec
    run = TrackedRun.start(
        tracking_uri=settings.tracking_uri,
        experiment=settings.experiment,
        run_name=settings.name,
        params={
            "spec": spec.name,
            "task": spec.task,
            "model": spec.model,
            "num_samples": str(total),
            "max_concurrent": str(settings.max_concurrent or spec.max_concurrent),
            "sampler": spec.sampler.type,
            "sampler_seed": str(spec.sampler.seed),
            "scheduler": spec.scheduler.type,
            "metric": spec.metric,
            "mode": spec.mode,
            "address": settings.address,
            "storage_path": settings.storage_path,
            "searched": ",".join(spec.params) or "-",
        },
        tags={**tags, "arnn.task": spec.task, "arnn.model": spec.model, **dict(settings.tags)},
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "spec.yaml"
        path.write_text(
            yaml.safe_dump(spec.model_dump(mode="json", exclude_defaults=True), sort_keys=False)
        )
        run.client.log_artifact(run.run_id, str(path), artifact_path="spec")
    return run


def _close_leftovers(parent: TrackedRun, settings: SweepSettings) -> dict[str, int]:
    """Close trial runs that a killed driver left RUNNING; count the trials by outcome."""
    counts = {"finished": 0, "pruned": 0, "diverged": 0, "failed": 0}
    for run in parent.children(settings.experiment):
        status = run.data.tags.get(STATUS_TAG)
        if run.info.status == "RUNNING":
            status = "pruned"
            TrackedRun(parent.client, run.info.run_id).close("KILLED", status)
        counts[status if status in counts else "failed"] += 1
    return counts


def _summarise(parent: TrackedRun, outcome: SweepOutcome, metric: str) -> None:
    parent.log_metrics({f"trials_{k}": v for k, v in outcome.counts.items()})
    rows = outcome.trials
    print(f"\n{len(rows)} trials: " + ", ".join(f"{v} {k}" for k, v in outcome.counts.items()))
    if not rows:
        return
    names = sorted({k for row in rows for k in row["params"]})
    header = ["trial", "state", "epochs", f"best {metric}", *names, "MLflow run"]
    table = [
        [
            row["trial"],
            row["state"],
            str(row["epochs"] or ""),
            "" if row["best"] is None else f"{row['best']:.4f}",
            *[_short(row["params"].get(n, "")) for n in names],
            row["run_id"] or "",
        ]
        for row in rows[:10]
    ]
    widths = [max(len(r[i]) for r in [header, *table]) for i in range(len(header))]
    for line in [header, *table]:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
    best = rows[0]
    if best["best"] is not None:
        parent.log_metrics({f"best_{metric}": best["best"]})
        parent.set_tags({"arnn.best_trial": best["trial"], "arnn.best_run_id": best["run_id"]})
        print(f"\nbest trial {best['trial']}: {metric} {best['best']}, MLflow run {best['run_id']}")


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
