from __future__ import annotations

import hashlib
import json
from pathlib import Path

import optuna
import pytest
import yaml

from arnn.cli import main
from arnn.errors import UsageError
from arnn.sweep.space import DefineByRun, make_sampler, num_trials
from arnn.sweep.spec import load_spec, parse_spec
from arnn.sweep.tune import TRIAL_NUMBER, SweepSettings, _tune_config

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "search_spaces").rglob("*.yaml"))

GOOD = {
    "name": "t",
    "task": "adding",
    "task_options": {"length": 8},
    "model": "antisymmetric",
    "fixed": {"hidden": 8, "epochs": 2},
    "params": {
        "gated": {"type": "bool"},
        "lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True},
        "eps": {"type": "categorical", "choices": [0.01, 0.1, 1.0]},
        "sigma_w": {"type": "float", "low": 0.5, "high": 2, "when": {"gated": True}},
    },
}


def _with(**changes):
    spec = {**GOOD, **changes}
    return {k: v for k, v in spec.items() if v is not None}


def _param(**params):
    return _with(params={**GOOD["params"], **params})


MALFORMED = [
    (_with(colour="red"), "colour: unknown key"),
    (_with(name=None), "name: required key is missing"),
    (_with(task=None), "task: required key is missing"),
    (_with(num_samples="many"), "num_samples: input should be a valid integer"),
    (_with(num_samples=0), "num_samples: input should be greater than or equal to 1"),
    (_param(lr={"type": "float", "low": 0.1, "high": 0.01}), "params.lr: low <= high must hold"),
    (
        _param(lr={"type": "float", "low": 0, "high": 0.1, "log": True}),
        "params.lr.low: must be > 0 with log: true",
    ),
    (
        _param(eps={"type": "categorical", "choices": []}),
        "params.eps.choices: list should have at least 1",
    ),
    (_with(model="transformer"), "model: unknown model 'transformer'"),
    (_with(task="imagenet"), "task: unknown task 'imagenet'"),
    (
        _param(sigma_w={"type": "float", "low": 0.5, "high": 2, "when": {"depth": 3}}),
        "params.sigma_w.when.depth: no parameter 'depth' in params",
    ),
    (_with(resources={"cpu": -1}), "resources.cpu: input should be greater than or equal to 0"),
    (_with(resources={"cpu": 1, "tpu": 1}), "resources.tpu: unknown key"),
    (_param(lr={"type": "floaty", "low": 0.1, "high": 1}), "params.lr.type: must be one of"),
    (_param(lr={"low": 0.1, "high": 1}), "params.lr: needs a type"),
    (
        _param(lr={"type": "float", "low": -1.0, "high": 0.1}),
        "params.lr.low: input should be greater than 0",
    ),
    (
        _param(eps={"type": "categorical", "choices": [0.1, -1]}),
        "params.eps.choices[1]: model antisymmetric: option 'eps': Input should be greater than 0",
    ),
    (_param(colour={"type": "bool"}), "params.colour: not a searchable setting"),
    (
        _param(data_dir={"type": "categorical", "choices": ["/a"]}),
        "params.data_dir: not a searchable setting",
    ),
    (
        _with(fixed={"hidden": 0, "epochs": 2}),
        "fixed.hidden: input should be greater than or equal to 1",
    ),
    (_with(fixed={"epochs": 2, "colour": 1}), "fixed.colour: unknown setting"),
    (_with(fixed={"epochs": 2, "device": "cuda"}), "fixed.device: where trials run is set by"),
    (_with(fixed={"epochs": 2, "lr": 0.1}), "fixed.lr: also in params"),
    (_with(model="lstm"), "params.gated: model 'lstm' has no gated variant"),
    (
        _param(
            sigma_w={"type": "float", "low": 0.5, "high": 2, "when": {"gamma": 0.1}},
            gamma={"type": "categorical", "choices": [0.1], "when": {"sigma_w": 1.0}},
        ),
        "conditions need a bool, categorical or int parameter",
    ),
    (
        _param(
            gamma={"type": "categorical", "choices": [0.1, 0.2], "when": {"momentum": 0.5}},
            momentum={"type": "categorical", "choices": [0.5, 0.9], "when": {"gamma": 0.1}},
        ),
        "params.gamma.when: the conditions form a cycle",
    ),
    (
        _param(sigma_w={"type": "float", "low": 0.5, "high": 2, "when": {"gated": "yes"}}),
        "params.sigma_w.when.gated: 'yes' is not a value of gated",
    ),
    (
        _with(scheduler={"type": "asha", "grace_period": 5}),
        "scheduler.grace_period: must be <= max_epochs (2)",
    ),
    (_with(scheduler={"type": "hyperband"}), "scheduler.type: must be one of 'asha', 'none'"),
    (_with(sampler={"type": "grid"}), "params.lr: the grid sampler needs categorical"),
    (_with(metric="test_accuracy"), "metric: input should be 'val_accuracy'"),
    (_with(task_options={"noise": "pink"}), "task_options: task adding: unknown option 'noise'"),
    (_param(hidden={"type": "int", "low": 4, "high": 8}), "fixed.hidden: also in params"),
    (_with(fixed={"iterations": 10}), "scheduler: asha stops trials at epoch milestones"),
    (_with(map=["lr", "dt"]), "map[1]: 'dt' is not in params (gated, lr, eps, sigma_w)"),
    (_with(map=["lr"]), "map: list should have at least 2 items"),
    (
        _with(points_to_evaluate=[{"gated": False, "lr": 0.01, "eps": 0.1, "dt": 1}]),
        "points_to_evaluate[0].dt: not in params (gated, lr, eps, sigma_w)",
    ),
    (
        _with(points_to_evaluate=[{"gated": True, "lr": 0.01, "eps": 0.1}]),
        "points_to_evaluate[0]: gives no value for sigma_w; a point sets every parameter",
    ),
    (
        _with(points_to_evaluate=[{"gated": False, "lr": 0.01, "eps": 0.1, "sigma_w": 1}]),
        "points_to_evaluate[0].sigma_w: its condition {'gated': True} does not hold",
    ),
    (
        _with(points_to_evaluate=[{"gated": False, "lr": 0.5, "eps": 0.1}]),
        "points_to_evaluate[0].lr: 0.5 is outside the parameter's range (float from 0.001 to 0.1)",
    ),
    (
        _with(points_to_evaluate=[{"gated": False, "lr": 0.01, "eps": 0.2}]),
        "points_to_evaluate[0].eps: 0.2 is outside the parameter's range (one of [0.01, 0.1, 1.0])",
    ),
    (
        _with(num_samples=1, points_to_evaluate=[{"gated": False, "lr": 0.01, "eps": 0.1}] * 2),
        "points_to_evaluate: 2 points but num_samples is 1",
    ),
    (
        _with(
            sampler={"type": "grid"},
            params={"eps": {"type": "categorical", "choices": [0.1]}},
            points_to_evaluate=[{"eps": 0.1}],
        ),
        "points_to_evaluate: the grid sampler runs its own points",
    ),
    (
        _with(
            params={
                "model": {"type": "categorical", "choices": ["antisymmetric", "lstm"]},
                "eps": {"type": "float", "low": 0.01, "high": 1.0},
            },
            points_to_evaluate=[{"model": "lstm", "eps": 0.1}],
        ),
        "points_to_evaluate[0]: model_options: model lstm: unknown option 'eps'",
    ),
]


@pytest.mark.parametrize(("raw", "message"), MALFORMED)
def test_a_malformed_spec_names_file_key_and_rule(raw, message):
    with pytest.raises(UsageError) as raised:
        parse_spec(raw, source="bad.yaml")
    text = str(raised.value)
    assert text.startswith("bad.yaml: ") and message in text, text
    assert "\n" not in text


def test_a_spec_with_several_mistakes_reports_every_one_with_the_allowed_keys():
    """Unknown keys at any depth and the checks across keys, all in one line; each unknown
    key with the keys allowed there and the closest one."""
    raw = _with(
        schedular={"type": "asha"},
        sampler={"type": "tpe", "sede": 3},
        fixed={"hidden": 8, "epochs": 2, "batchsize": 64},
    )
    raw["params"] = {**GOOD["params"], "lr": {"type": "float", "low": 0.001, "hihg": 0.1}}
    with pytest.raises(UsageError) as raised:
        parse_spec(raw, source="bad.yaml")
    text = str(raised.value)
    assert "\n" not in text
    assert "schedular: unknown key; did you mean scheduler? (allowed: " in text
    assert "num_samples, params, points_to_evaluate, resources, sampler, scheduler" in text
    assert "sampler.sede: unknown key; did you mean seed? (allowed: seed, type)" in text
    assert "params.lr.hihg: unknown key; did you mean high? (allowed: high, log, low, step" in text
    assert "params.lr.high: required key is missing" in text
    raw["params"] = GOOD["params"]
    with pytest.raises(UsageError) as raised:
        parse_spec(raw, source="bad.yaml")
    text = str(raised.value)  # set aside the unknown keys, the cross-checks still ran
    assert "schedular: unknown key" in text and "sampler.sede: unknown key" in text
    assert "fixed.batchsize: unknown setting; did you mean batch_size? (allowed: " in text


def test_malformed_yaml_and_missing_files_are_one_line(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(UsageError, match=r"broken.yaml: not valid YAML at line 2"):
        load_spec(broken)
    with pytest.raises(UsageError, match=r"missing.yaml: cannot read the spec"):
        load_spec(tmp_path / "missing.yaml")
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(UsageError, match="a spec is a mapping"):
        load_spec(listed)


def test_the_command_refuses_a_bad_spec_before_starting_anything(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_with(num_samples=-3)))
    assert main(["sweep", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert f"{bad}: num_samples: input should be greater than or equal to 1, got -3" in err
    assert list(tmp_path.iterdir()) == [bad]  # no mlflow.db, no ray_results


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_spec_is_valid(path):
    spec = load_spec(path)
    assert spec.name and num_trials(spec) >= 1
    study = optuna.create_study(sampler=make_sampler(spec), direction=spec.mode + "imize")
    trial = study.ask()
    DefineByRun(spec)(trial)
    spec.trial_config(trial.params)  # what Optuna samples makes a valid configuration


def test_the_points_to_evaluate_are_the_first_trials_in_order(tmp_path):
    points = [
        {"gated": True, "lr": 0.002, "eps": 1.0, "sigma_w": 0.75},
        {"gated": False, "lr": 0.05, "eps": 0.01},
    ]
    spec = parse_spec(_with(points_to_evaluate=points, num_samples=4))
    settings = SweepSettings(
        name="points",
        spec=spec,
        tracking_uri="sqlite://",
        experiment="e",
        storage_path=str(tmp_path),
    )
    search = _tune_config(settings, 4).search_alg  # the OptunaSearch a sweep runs
    suggested = [search.suggest(f"trial{i}") for i in range(3)]
    assert [s.pop(TRIAL_NUMBER) for s in suggested] == [0, 1, 2]  # what names the runs
    assert suggested[:2] == points
    assert suggested[2] not in points  # then the sampler's own
    assert spec.trial_config(suggested[0]).model.name == "antisymmetric_gated"


def test_a_sweep_recorded_before_the_newer_spec_keys_still_resumes():
    """What a resume compares leaves out `map` and an empty points_to_evaluate: the
    content of a sweep recorded before those keys existed is unchanged (its hash too); the
    record the sweep's run keeps has them, for the report."""
    from arnn.sweep.driver import _searched, spec_hash, spec_record

    spec = parse_spec(_with(map=["lr", "eps"]))
    record = spec_record(spec, 8)
    assert record["map"] == ["lr", "eps"] and record["points_to_evaluate"] == []
    content = _searched(record)
    assert "map" not in content and "points_to_evaluate" not in content
    older = {**spec.model_dump(mode="json", exclude={"map", "points_to_evaluate"})}
    assert (
        spec_hash(spec, 8)
        == hashlib.sha256(
            json.dumps({**older, "num_samples": 8}, sort_keys=True).encode()
        ).hexdigest()[:16]
    )
    point = {"gated": False, "lr": 0.01, "eps": 0.1}
    assert _searched(spec_record(parse_spec(_with(points_to_evaluate=[point])), 8))[
        "points_to_evaluate"
    ] == [point]


def test_the_reports_map_is_eps_by_gamma_unless_the_spec_names_two_others():
    both = {**GOOD["params"], "gamma": {"type": "float", "low": 0.001, "high": 1, "log": True}}
    assert parse_spec(_with(params=both)).map_params() == ("eps", "gamma")
    assert parse_spec(GOOD).map_params() == ("lr", "eps")  # the first two numeric ones
    assert parse_spec(_with(map=["gated", "eps"])).map_params() == ("gated", "eps")
    assert parse_spec(_with(params={"gated": {"type": "bool"}})).map_params() is None
    chosen = parse_spec(_with(params=both, map=["gamma", "lr"]))
    assert chosen.map_params() == ("gamma", "lr")


def test_conditional_parameters_exist_only_when_their_condition_holds():
    spec = parse_spec(GOOD)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = []
    for _ in range(30):
        trial = study.ask()
        DefineByRun(spec)(trial)
        seen.append(trial.params)
        study.tell(trial, 0.0)
    assert all(("sigma_w" in p) == p["gated"] for p in seen)
    assert {p["gated"] for p in seen} == {False, True}
    gated = spec.trial_config({"gated": True, "lr": 0.01, "eps": 0.1, "sigma_w": 1.5})
    assert gated.model.name == "antisymmetric_gated" and gated.model.options["sigma_w"] == 1.5
    assert spec.trial_config({"gated": False, "lr": 0.01, "eps": 0.1}).model.name == "antisymmetric"


def test_the_same_sampler_seed_samples_the_same_trials():
    spec = parse_spec(GOOD)

    def sample():
        study = optuna.create_study(sampler=make_sampler(spec))
        values = []
        for _ in range(5):
            trial = study.ask()
            DefineByRun(spec)(trial)
            values.append(trial.params)
            study.tell(trial, trial.params["lr"])
        return values

    assert sample() == sample()


def test_a_grid_runs_each_point_once():
    spec = parse_spec(
        _with(
            sampler={"type": "grid"},
            params={
                "gated": {"type": "bool"},
                "eps": {"type": "categorical", "choices": [0.01, 0.1, 1.0]},
            },
        )
    )
    assert num_trials(spec, samples=100) == 6
