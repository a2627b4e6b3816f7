"""Sweep specs: YAML -> a validated `Spec`, every problem named by file and key path.

A spec fixes the task, the model and any training setting (`fixed:`), and lists the
hyperparameters Optuna samples (`params:`); search_spaces/README.md documents the format.
Nothing is started before a spec has passed every check here.
"""

from __future__ import annotations

import difflib
import math
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import yaml

from arnn.config import FLAT_FIELDS, TrainConfig, config_problems
from arnn.errors import UsageError, value_problem
from arnn.models import list_models, model_entry

Scalar = str | int | float | bool
METRICS = ("val_accuracy", "val_loss", "train_accuracy", "train_loss")
_SPEC_ONLY_PARAMS = ("gated",)  # sampled, but not TrainConfig fields themselves


class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class _Param(_Strict):
    # `when: {gated: true}`: the parameter exists only in trials where `gated` is true.
    when: dict[str, Scalar] | None = None


class FloatParam(_Param):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = pydantic.Field(None, gt=0)


class IntParam(_Param):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = pydantic.Field(1, ge=1)


class CategoricalParam(_Param):
    type: Literal["categorical"]
    choices: list[Scalar] = pydantic.Field(min_length=1)


class BoolParam(_Param):
    type: Literal["bool"]


Param = Annotated[
    FloatParam | IntParam | CategoricalParam | BoolParam, pydantic.Field(discriminator="type")
]


class Sampler(_Strict):
    type: Literal["tpe", "random", "grid"] = "tpe"
    seed: int = 0


class Asha(_Strict):
    type: Literal["asha"]
    grace_period: int = pydantic.Field(1, ge=1)
    reduction_factor: float = pydantic.Field(3.0, gt=1)
    max_epochs: int | None = pydantic.Field(None, ge=1)


class NoScheduler(_Strict):
    type: Literal["none"]


class Resources(_Strict):
    cpu: float = pydantic.Field(1.0, ge=0)
    gpu: float = pydantic.Field(0.0, ge=0)


class Spec(_Strict):
    """A validated sweep spec. Build it with `load_spec(path)` or `parse_spec(dict)`."""

    name: str = pydantic.Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    task: str
    task_options: dict[str, Any] = pydantic.Field(default_factory=dict)
    model: str
    fixed: dict[str, Any] = pydantic.Field(default_factory=dict)
    params: dict[str, Param] = pydantic.Field(default_factory=dict)
    # Trials evaluated first, in order, before the sampler proposes any: e.g. a model's
    # published settings. Each gives a value to every parameter its conditions make active.
    points_to_evaluate: list[dict[str, Scalar]] = pydantic.Field(default_factory=list)
    # The two parameters of the sweep report's outcome map, any kind (default: eps and
    # gamma where both are searched, else the first two numeric parameters).
    map: list[str] | None = pydantic.Field(None, min_length=2, max_length=2)
    sampler: Sampler = Sampler()
    scheduler: Annotated[Asha | NoScheduler, pydantic.Field(discriminator="type")] = Asha(
        type="asha"
    )
    num_samples: int = pydantic.Field(8, ge=1)
    max_concurrent: int = pydantic.Field(2, ge=1)
    resources: Resources = Resources()
    metric: Literal["val_accuracy", "val_loss", "train_accuracy", "train_loss"] = "val_accuracy"
    mode: Literal["max", "min"] = "max"

    def param_order(self) -> list[str]:
        """Parameters in an order where every `when` names one sampled before it."""
        order: list[str] = []
        pending = dict(self.params)
        while pending:
            ready = [n for n, p in pending.items() if set(p.when or {}) <= set(order)]
            if not ready:  # the rest depend on each other in a cycle: left out
                break
            order.extend(ready)
            for name in ready:
                del pending[name]
        return order

    def is_active(self, name: str, values: dict[str, Any]) -> bool:
        """Whether parameter `name` is sampled in a trial where the others took `values`:
        every value its `when` names was taken."""
        return all(
            key in values and values[key] == value
            for key, value in (self.params[name].when or {}).items()
        )

    def map_params(self) -> tuple[str, str] | None:
        """The two parameters of the report's outcome map: `map`, else eps and gamma where
        both are searched, else the first two numeric ones (None when there are not two)."""
        if self.map:
            return self.map[0], self.map[1]
        if {"eps", "gamma"} <= set(self.params):
            return "eps", "gamma"
        numeric = [name for name, param in self.params.items() if is_numeric(param)]
        return (numeric[0], numeric[1]) if len(numeric) >= 2 else None

    @property
    def max_epochs(self) -> int:
        """The length of a full trial in epochs: what ASHA's last rung is."""
        if isinstance(self.scheduler, Asha) and self.scheduler.max_epochs is not None:
            return self.scheduler.max_epochs
        return self.base_config().length[1]

    def grid_size(self) -> int:
        sizes = [len(param_values(p)) for p in self.params.values()]
        return math.prod(sizes)

    def base_config(self) -> TrainConfig:
        """The configuration of everything fixed (sampled values left at their defaults)."""
        return TrainConfig.model_validate(self._fixed_values())

    def _fixed_values(self) -> dict[str, Any]:
        return {
            **self.fixed,
            "task": self.task,
            "task_options": self.task_options,
            "model": self.model,
        }

    def trial_config(self, sampled: dict[str, Any], **placement: Any) -> TrainConfig:
        """The configuration of one trial: the fixed settings plus what Optuna sampled."""
        return TrainConfig.model_validate(self.trial_values(sampled, **placement))

    def trial_values(self, sampled: dict[str, Any], **placement: Any) -> dict[str, Any]:
        values = {**self._fixed_values(), **sampled, **placement}
        if values.pop("gated", False):
            values["model"] = model_entry(values["model"]).gated_variant
        return values


def param_values(param) -> list[Scalar]:
    """Every value a discrete parameter can take (low and high for continuous ones)."""
    if isinstance(param, CategoricalParam):
        return list(param.choices)
    if isinstance(param, BoolParam):
        return [False, True]
    if isinstance(param, IntParam) and not param.log:
        return list(range(param.low, param.high + 1, param.step))
    return [param.low, param.high]


def is_numeric(param) -> bool:
    """A float or int parameter, or a categorical one whose choices are all numbers."""
    if isinstance(param, CategoricalParam):
        return all(isinstance(c, int | float) and not isinstance(c, bool) for c in param.choices)
    return isinstance(param, FloatParam | IntParam)


def load_spec(path: str | Path) -> Spec:
    """Read and validate a YAML spec; any problem is one UsageError line naming the file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as error:
        raise UsageError(f"{path}: cannot read the spec: {error.strerror}") from None
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise UsageError(
            f"{path}: not valid YAML{line}: {getattr(error, 'problem', error)}"
        ) from None
    return parse_spec(raw, source=str(path))


def parse_spec(raw: Any, *, source: str = "spec") -> Spec:
    """Validate a spec whole: every problem in one UsageError, not the first alone."""
    if not isinstance(raw, dict):
        raise UsageError(f"{source}: a spec is a mapping of keys (name, task, model, ...)")
    problems, spec = _validated(raw)
    if spec is not None:
        problems += _cross_checks(spec)
    if problems:
        raise UsageError(f"{source}: " + "; ".join(problems))
    return spec


def _validated(raw: dict) -> tuple[list[str], Spec | None]:
    """The schema's problems, and the Spec where the only ones are unknown keys: those are
    set aside, so that the checks across keys still run on the rest in the same go."""
    try:
        return [], Spec.model_validate(raw)
    except pydantic.ValidationError as error:
        items = error.errors()
    problems = [_describe(item) for item in items]
    unknown = [item["loc"] for item in items if item["type"] == "extra_forbidden"]
    if len(unknown) < len(items):
        return problems, None
    try:
        return problems, Spec.model_validate(_without(raw, unknown))
    except pydantic.ValidationError:
        return problems, None


def _without(raw: Any, locations: list[tuple]) -> Any:
    """A copy of `raw` without the keys at `locations` (pydantic's error paths, in which a
    discriminated union's tag stands where the raw mapping has no key)."""
    copy = yaml.safe_load(yaml.safe_dump(raw))
    for location in locations:
        node = copy
        for part in location[:-1]:
            if isinstance(node, dict) and part in node or isinstance(node, list):
                node = node[part]
        node.pop(location[-1], None)
    return copy


def unknown_key(where: str, key: str, allowed: Iterable[str], problem: str = "unknown key") -> str:
    """'fixed.batchsize: unknown setting; did you mean batch_size? (allowed: ...)'."""
    allowed = sorted(allowed)
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"{where}: {problem}{hint} (allowed: {', '.join(allowed)})"


def _keys_at(location: tuple) -> list[str]:
    """The keys the spec's schema allows in the mapping at `location` (a pydantic path)."""
    kinds: list[Any] = [Spec]
    for part in location:
        kinds = [step for kind in _members(kinds) for step in _step(kind, part)]
    return [name for kind in _members(kinds) if _is_model(kind) for name in kind.model_fields]


def _members(kinds: list[Any]) -> list[Any]:
    """The concrete types behind Annotated[...], unions and Optional."""
    out = []
    for kind in kinds:
        if typing.get_origin(kind) is Annotated:
            out += _members([typing.get_args(kind)[0]])
        elif typing.get_origin(kind) in (typing.Union, types.UnionType):
            out += _members([arg for arg in typing.get_args(kind) if arg is not type(None)])
        else:
            out.append(kind)
    return out


def _step(kind: Any, part: Any) -> list[Any]:
    if _is_model(kind):
        if part in kind.model_fields:
            return [kind.model_fields[part].annotation]
        tag = kind.model_fields.get("type")
        return [kind] if tag and part in typing.get_args(tag.annotation) else []
    if typing.get_origin(kind) in (dict, list):
        return [typing.get_args(kind)[-1]]
    return []


def _is_model(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, pydantic.BaseModel)


def _describe(item: dict) -> str:
    # Discriminated unions put the chosen tag in the path ('params.lr.float.low'): drop it.
    loc = [str(part) for part in item["loc"]]
    tags = {"float", "int", "categorical", "bool", "asha", "none"}
    path = ".".join(p for i, p in enumerate(loc) if not (i > 0 and p in tags and i < len(loc) - 1))
    if item["type"] == "extra_forbidden":
        return unknown_key(path, loc[-1], _keys_at(item["loc"][:-1]))
    if item["type"] == "missing":
        return f"{path}: required key is missing"
    if item["type"] == "union_tag_invalid":
        tag = item["ctx"]["tag"]
        return f"{path}.type: must be one of {item['ctx']['expected_tags']}, got {tag!r}"
    if item["type"] == "union_tag_not_found":
        return f"{path}: needs a type ({item['ctx']['discriminator']})"
    return f"{path}: {value_problem(item)}"


def _cross_checks(spec: Spec) -> list[str]:
    """Checks across keys; each problem names its key path. Each stage is checked against
    a valid one before it: the task and model, then the fixed settings, then the rest."""
    base = {"task": spec.task, "task_options": spec.task_options, "model": spec.model}
    base_errors = [(f, m) for f, m in config_problems(base) if f in base]
    if base_errors:
        return [f"{field}: {message}" for field, message in base_errors]
    options = _model_option_names(spec)  # a model's own options: fixed or searched by name
    problems = _fixed_problems(spec, options)
    if problems:
        return problems
    for name, param in spec.params.items():
        problems.extend(_param_problems(spec, name, param, options))
    problems.extend(_sweep_problems(spec))
    if not problems:
        problems.extend(_point_problems(spec))
    for i, name in enumerate(spec.map or []):
        if name not in spec.params:
            problems.append(
                f"map[{i}]: {name!r} is not in params ({', '.join(spec.params) or 'none'})"
            )
    return problems


# Where a trial runs (the runtime section) is `arnn sweep`'s to set, not a spec's.
_PLACEMENT = frozenset(flat for flat, (section, _) in FLAT_FIELDS.items() if section == "runtime")
_SETTINGS = frozenset({*FLAT_FIELDS, "seed"} - {"model_options"})


def _fixed_problems(spec: Spec, options: set[str]) -> list[str]:
    """Every fixed key is a setting a spec may fix, not also sampled, and together they
    make a valid configuration."""
    fixable = (_SETTINGS - {"task", "task_options", "model"}) | options
    problems: list[str] = []
    for key in spec.fixed:
        if key not in fixable:
            problems.append(
                unknown_key(f"fixed.{key}", key, fixable - _PLACEMENT, "unknown setting")
            )
        elif key in _PLACEMENT:
            problems.append(f"fixed.{key}: where trials run is set by `arnn sweep`, not a spec")
        if key in spec.params:
            problems.append(f"fixed.{key}: also in params; a setting is fixed or sampled")
    if problems:
        return problems
    return [f"fixed.{f}: {m}" for f, m in config_problems(spec._fixed_values())]


def _param_problems(spec: Spec, name: str, param, options: set[str]) -> list[str]:
    """A sampled parameter is searchable, its range and conditions are sound, and every
    value at the edge of its range makes a valid configuration with the fixed settings."""
    where = f"params.{name}"
    searchable = (_SETTINGS - {"task", "task_options", *_PLACEMENT}) | set(_SPEC_ONLY_PARAMS)
    searchable |= options
    if name not in searchable:
        return [unknown_key(where, name, searchable, "not a searchable setting")]
    range_problems = _range_problems(where, param)
    problems = range_problems + _when_problems(spec, name, param)
    if range_problems:
        return problems
    if name == "gated":
        return problems + _gated_problems(spec, where, param)
    if name == "model":
        return problems + [
            f"{where}.choices[{i}]: unknown model {choice!r}; allowed: {', '.join(list_models())}"
            for i, choice in enumerate(param_values(param))
            if choice not in list_models()
        ]
    for label, value in _edges(param):
        trial = {**spec._fixed_values(), name: value}
        for field, message in config_problems(trial):
            if field == name or (field == "model_options" and f"option {name!r}" in message):
                problems.append(f"{where}.{label}: {message}")
    return problems


def _gated_problems(spec: Spec, where: str, param) -> list[str]:
    if not isinstance(param, BoolParam):
        return [f"{where}: gated is a bool parameter, got type {param.type}"]
    if model_entry(spec.model).gated_variant is None:
        return [f"{where}: model {spec.model!r} has no gated variant (antisymmetric has)"]
    return []


def _model_option_names(spec: Spec) -> set[str]:
    """The options of the spec's model and of every model a trial may become."""
    models = {spec.model, model_entry(spec.model).gated_variant}
    if "model" in spec.params:
        models |= {str(choice) for choice in param_values(spec.params["model"])}
    names = set()
    for name in models - {None}:
        if name in list_models() and model_entry(name).options is not None:
            names |= set(model_entry(name).options.model_fields)
    return names


def _point_problems(spec: Spec) -> list[str]:
    """Each point to evaluate sets exactly the active parameters, inside their ranges, and
    makes a valid configuration with the fixed settings."""
    problems: list[str] = []
    if spec.points_to_evaluate and spec.sampler.type == "grid":
        return ["points_to_evaluate: the grid sampler runs its own points; use tpe or random"]
    if len(spec.points_to_evaluate) > spec.num_samples:
        problems.append(
            f"points_to_evaluate: {len(spec.points_to_evaluate)} points but num_samples is "
            f"{spec.num_samples}; every point is a trial"
        )
    for i, point in enumerate(spec.points_to_evaluate):
        where = f"points_to_evaluate[{i}]"
        active = [name for name in spec.param_order() if spec.is_active(name, point)]
        for name in point:
            if name not in spec.params:
                problems.append(f"{where}.{name}: not in params ({', '.join(spec.params)})")
            elif name not in active:
                problems.append(
                    f"{where}.{name}: its condition {spec.params[name].when} does not hold"
                )
        for name in active:
            if name not in point:
                problems.append(f"{where}: gives no value for {name}; a point sets every parameter")
            elif not _inside(spec.params[name], point[name]):
                problems.append(
                    f"{where}.{name}: {point[name]!r} is outside the parameter's range "
                    f"({_range_text(spec.params[name])})"
                )
        if problems:
            continue
        values = spec.trial_values(point)
        problems.extend(
            f"{where}: {field}: {message}" for field, message in config_problems(values)
        )
    return problems


def _inside(param, value: Any) -> bool:
    if isinstance(param, CategoricalParam):
        return value in param.choices
    if isinstance(param, BoolParam):
        return isinstance(value, bool)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(param, IntParam) and not isinstance(value, int):
        return False
    return param.low <= value <= param.high


def _range_text(param) -> str:
    if isinstance(param, CategoricalParam):
        return f"one of {param.choices}"
    if isinstance(param, BoolParam):
        return "true or false"
    return f"{param.type} from {param.low} to {param.high}"


def _range_problems(where: str, param) -> list[str]:
    problems = []
    if isinstance(param, FloatParam | IntParam):
        if param.low > param.high:
            problems.append(
                f"{where}: low <= high must hold, got low={param.low}, high={param.high}"
            )
        if param.log and param.low <= 0:
            problems.append(f"{where}.low: must be > 0 with log: true, got {param.low}")
        if param.log and isinstance(param, FloatParam) and param.step is not None:
            problems.append(f"{where}: step and log: true cannot be combined")
    return problems


def _edges(param) -> list[tuple[str, Scalar]]:
    if isinstance(param, CategoricalParam):
        return [(f"choices[{i}]", c) for i, c in enumerate(param.choices)]
    if isinstance(param, BoolParam):
        return [("type", False), ("type", True)]
    return [("low", param.low), ("high", param.high)]


def _when_problems(spec: Spec, name: str, param) -> list[str]:
    problems = []
    for other, value in (param.when or {}).items():
        where = f"params.{name}.when.{other}"
        if other == name:
            problems.append(f"{where}: a parameter cannot depend on itself")
        elif other not in spec.params:
            problems.append(f"{where}: no parameter {other!r} in params to depend on")
        elif isinstance(spec.params[other], FloatParam):
            problems.append(f"{where}: conditions need a bool, categorical or int parameter")
        elif value not in param_values(spec.params[other]):
            problems.append(
                f"{where}: {value!r} is not a value of {other} ({param_values(spec.params[other])})"
            )
    if not problems and name not in spec.param_order():
        problems.append(f"params.{name}.when: the conditions form a cycle")
    return problems


def _sweep_problems(spec: Spec) -> list[str]:
    problems = []
    length_unit, epochs = spec.base_config().length
    if isinstance(spec.scheduler, Asha):
        if length_unit != "epochs" or {"epochs", "iterations"} & set(spec.params):
            problems.append(
                "scheduler: asha stops trials at epoch milestones; fix the length with "
                "fixed.epochs (not iterations, not sampled) or use scheduler: {type: none}"
            )
        elif spec.scheduler.grace_period > spec.max_epochs:
            problems.append(
                f"scheduler.grace_period: must be <= max_epochs ({spec.max_epochs}), got "
                f"{spec.scheduler.grace_period}"
            )
        elif spec.max_epochs != epochs:
            problems.append(
                f"scheduler.max_epochs: must equal the trials' length, fixed.epochs = {epochs}, "
                f"got {spec.max_epochs}"
            )
    if spec.sampler.type == "grid":
        for name, param in spec.params.items():
            if param.when:
                problems.append(f"params.{name}.when: the grid sampler takes no conditions")
            if isinstance(param, FloatParam) or (isinstance(param, IntParam) and param.log):
                problems.append(
                    f"params.{name}: the grid sampler needs categorical, bool or linear int "
                    f"parameters, got {param.type}"
                )
    return problems
