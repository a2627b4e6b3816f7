"""A sweep request: every option of one sweep, once, validated.

`arnn sweep`'s flags and reproduce/run.py's are made from its fields (`add_flags`), a flag's
problem is named by its flag (`make_request`), the line that resumes an interrupted sweep is
printed from it (`resume_line`), and the driver (arnn.sweep.driver) takes it whole. Adding
an option is one field here, with its description (the flag's help); `flag=False` keeps it
for callers in Python (a reproduction's tags, its final runs).
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any, Literal

import pydantic

from arnn.errors import UsageError, value_problem
from arnn.sweep.spec import Spec


def _option(default: Any, description: str, *, flag: bool = True, **rules: Any) -> Any:
    return pydantic.Field(
        default, description=description, json_schema_extra={"flag": flag}, **rules
    )


class SweepRequest(pydantic.BaseModel):
    """What to sweep (`spec`: a Spec, or its YAML file) and how; see the fields."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    spec: Spec | Path = _option(..., "YAML sweep spec (see search_spaces/README.md)")
    name: str | None = _option(None, "sweep name (default: the spec's name and a timestamp)")
    samples: int | None = _option(None, "trials (default: the spec's num_samples)", ge=1)
    address: str = _option(
        "local",
        "Ray: local (an embedded Ray, default), auto (the running cluster), HOST:PORT or "
        "ray://HOST:PORT",
    )
    tracking_uri: str | None = _option(
        None, "MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)"
    )
    experiment: str = _option("arnn", "MLflow experiment (default: arnn)")
    storage_path: str | None = _option(
        None,
        "where Ray keeps trial checkpoints and the sweep state (default: $ARNN_STORAGE_PATH, "
        "else ./ray_results); shared (s3://, NFS) on a cluster",
    )
    resume: bool = _option(False, "finish the sweep named --name")
    max_concurrent: int | None = _option(None, "trials at once (default: the spec's)", ge=1)
    data_dir: str | None = _option(
        None, "data root for the trials (default: each worker's $ARNN_DATA_DIR, else "
        "~/.cache/arnn/data)"
    )  # fmt: skip
    study_storage: str | None = _option(
        None,
        "SQLAlchemy URL of the database that keeps the sweep's Optuna study, named after the "
        "sweep (default: $ARNN_STUDY_STORAGE, else optuna.db beside an MLflow store in files)",
    )
    # For callers in Python (arnn.reproduction), not flags:
    tags: dict[str, str] = _option({}, "tags on the sweep's run and every trial's", flag=False)
    score_test: bool = _option(False, "score each trial's test split (final runs)", flag=False)
    trial_kind: Literal["trial", "final"] = _option(
        "trial", "the trials' arnn.kind: trial, or final for final runs", flag=False
    )
    resume_command: str | None = _option(
        None, "the command an interrupted sweep prints (default: resume_line)", flag=False
    )

    @pydantic.model_validator(mode="after")
    def _resume_names_a_sweep(self) -> SweepRequest:
        if self.resume and self.name is None:
            raise ValueError("name the sweep to resume with --name")
        return self

    def resume_line(self) -> str:
        """The command that resumes this sweep: its caller's (`resume_command`), else `arnn
        sweep` with the spec, the name and every flag given that changes what or where it
        runs."""
        if self.resume_command:
            return self.resume_command
        if isinstance(self.spec, Spec):  # called from Python with a Spec
            return f"the same call with name={self.name!r} and resume=True"
        given = self.model_dump(include=set(FLAGS) - {"spec", "name", "resume"})
        defaults = SweepRequest.model_fields
        words = ["arnn", "sweep", str(self.spec), "--name", str(self.name), "--resume"]
        for key, value in given.items():
            if value is not None and value != defaults[key].default:
                value = shown(value) if key == "study_storage" else value
                words += [flag_of(key), str(value)]
        return shlex.join(words)


def shown(storage: str) -> str:
    """A storage URL with its password, if any, as ***: for the console."""
    import sqlalchemy

    return sqlalchemy.engine.make_url(storage).render_as_string(hide_password=True)


FLAGS = [
    name
    for name, field in SweepRequest.model_fields.items()
    if (field.json_schema_extra or {}).get("flag")
]


def flag_of(field: str) -> str:
    return "--" + field.replace("_", "-")


def add_flags(parser: argparse.ArgumentParser, only: tuple[str, ...] | None = None) -> None:
    """The request's fields as flags (the spec as the first argument), each with its
    description as help; `only` picks some (reproduce/run.py passes a few through)."""
    for name in only or FLAGS:
        field = SweepRequest.model_fields[name]
        if name == "spec":
            parser.add_argument("spec", help=field.description)
        elif field.annotation is bool:
            parser.add_argument(flag_of(name), action="store_true", help=field.description)
        else:
            kind = int if "int" in str(field.annotation) else str
            parser.add_argument(
                flag_of(name), type=kind, default=field.default, help=field.description
            )


def make_request(values: dict[str, Any], **more: Any) -> SweepRequest:
    """A request from parsed flags (argparse's, as a dict) and callers' options; every
    problem in one UsageError line, each named by its flag."""
    given = {k: v for k, v in values.items() if k in FLAGS and v is not None}
    try:
        return SweepRequest(**given, **more)
    except pydantic.ValidationError as error:
        problems = [
            f"{flag_of(str(item['loc'][0])) if item['loc'] else '--resume'}: {value_problem(item)}"
            for item in error.errors()
        ]
        raise UsageError("; ".join(problems)) from None
