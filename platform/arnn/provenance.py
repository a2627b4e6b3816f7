"""Where a run's numbers come from: the code's git commit, whether its tree had uncommitted
changes, and the versions of the libraries that computed them.

Resolved once per process from the package's own location, not from the working directory
(Ray runs each trial in a folder of its own), and attached to every MLflow run the same way
(`arnn.tracking.TrackedRun.start`).
"""

from __future__ import annotations

import functools
import subprocess
from importlib import metadata
from pathlib import Path

from arnn import record

PACKAGE_DIR = Path(__file__).resolve().parent
LIBRARIES = ("arnn", "torch", "ray", "optuna", "mlflow")
UNKNOWN = "unknown"


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout


def git_state(folder: Path = PACKAGE_DIR) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout `folder` is in (by default the one the package is
    imported from); (None, None) when it is not in one (an installed wheel, a worker
    without the repository).

    Dirty means a tracked file differs from the commit. Untracked files never count: the
    platform's own outputs (mlflow.db, optuna.db, ray_results/, figures) land in the
    checkout and say nothing about the code, and a new module only computes anything once
    a tracked file imports it, which makes the tree dirty by itself."""
    commit = (_git(folder, "rev-parse", "HEAD") or "").strip() or None
    if commit is None:
        return None, None
    status = _git(folder, "status", "--porcelain", "--untracked-files=no")
    return commit, None if status is None else bool(status.strip())


def version(library: str) -> str:
    try:
        return metadata.version(library)
    except metadata.PackageNotFoundError:
        return "not installed"


@functools.cache
def provenance_tags() -> dict[str, str]:
    """The tags that trace a run to its code: commit, dirty flag and library versions."""
    commit, dirty = git_state()
    tags = {
        record.GIT_COMMIT: commit or UNKNOWN,
        record.GIT_DIRTY: UNKNOWN if dirty is None else str(dirty).lower(),
    }
    if commit:
        tags["mlflow.source.git.commit"] = commit
    tags.update({f"{record.VERSION_PREFIX}{name}": version(name) for name in LIBRARIES})
    return tags


def merged_history(previous: dict[str, str], current: dict[str, str]) -> dict[str, str]:
    """The tags that a reopened run (a resumed sweep, a retried trial, a resumed training)
    gets: the current provenance, and in `arnn.git_commits` every commit that has computed
    part of it, in order."""
    commits = previous.get(record.GIT_COMMITS) or previous.get(record.GIT_COMMIT) or ""
    seen = [c for c in commits.split(",") if c]
    now = current.get(record.GIT_COMMIT, UNKNOWN)
    if now not in seen:
        seen.append(now)
    return {**current, record.GIT_COMMITS: ",".join(seen)}
