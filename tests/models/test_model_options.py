"""Models carry their own options: listed by `arnn models`, given as --model-option or as a
spec's keys, refused in one line when the model lacks them, logged as model.KEY."""

from __future__ import annotations

import pytest

from arnn.config import TrainConfig
from arnn.errors import UsageError
from arnn.sweep.spec import parse_spec
from tests.conftest import only_run, run_arnn

ADDING = ["--task", "adding", "--task-option", "length=6", "--task-option", "train_size=128"]


def _formula(model: str, m: int, n: int, layers: int = 3) -> int:
    """The successors' exact counts (docs/models.md), 10 classes."""
    return {
        "cornn": 2 * n * n + (m + 11) * n + 10,
        "lipschitz": 2 * n * n + (m + 11) * n + 10,
        "lem": 4 * n * n + 4 * m * n + 14 * n + 10,
        "unicornn": (m * n + 3 * n) + (layers - 1) * (n * n + 3 * n) + 10 * n + 10,
    }[model]


def test_arnn_models_prints_every_models_exact_count_and_options(tmp_path):
    done = run_arnn("models", "--task", "mnist", "--hidden", "128", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line for line in done.stdout.splitlines()[1:]}
    for model in ("cornn", "lipschitz", "lem", "unicornn"):
        assert rows[model].split()[2] == str(_formula(model, 1, 128)), rows[model]
    assert "dt=0.042 (> 0); gamma=2.7 (>= 0); eps=4.7 (>= 0); imex=False" in rows["cornn"]
    assert "scheme=euler (euler | midpoint)" in rows["lipschitz"]
    assert "layers=3 (>= 1); dropout=0.1 (>= 0, < 1)" in rows["unicornn"]
    assert "eps=0.01 (> 0); gamma=0.01 (>= 0); sigma_w=1.0 (>= 0)" in rows["antisymmetric"]
    assert rows["antisymmetric"].split()[2] == "9674"


def test_a_models_options_come_typed_with_their_defaults_from_any_spelling():
    config = TrainConfig.parse({"model": "cornn", "dt": "0.05", "model_options": {"imex": "true"}})
    assert config.model.options == {"dt": 0.05, "gamma": 2.7, "eps": 4.7, "imex": True}
    # eps is coRNN's own damping, not the antisymmetric step size
    assert TrainConfig.parse({"model": "cornn", "eps": 8.0}).model.options["eps"] == 8.0
    antisymmetric = TrainConfig.parse({"model": "antisymmetric", "eps": 0.5}).model.options
    assert antisymmetric == {"eps": 0.5, "gamma": 0.01, "sigma_w": 1.0, "scheme": "euler"}
    assert TrainConfig.parse({"model": "lstm"}).model.options == {"sigma_w": 1.0}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"model": "cornn", "model_options": {"dtt": 1}},
            "model_options: model cornn: unknown option 'dtt' (allowed: dt, gamma, eps, imex)",
        ),
        (
            {"model": "lem", "dt": 0},
            "model_options: model lem: option 'dt': Input should be greater than 0, got 0",
        ),
        (
            {"model": "lstm", "eps": 0.1},
            "model_options: model lstm: unknown option 'eps' (allowed: sigma_w)",
        ),
    ],
)
def test_an_option_the_model_lacks_or_out_of_range_is_one_line(values, message):
    with pytest.raises(UsageError) as raised:
        TrainConfig.parse(values)
    assert str(raised.value) == message


def test_train_refuses_a_bad_model_option_before_mlflow(tmp_path):
    done = run_arnn("train", *ADDING, "--model", "lem", "--model-option", "dt=-1", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "arnn: error: --model-option: model lem: option 'dt': "
        "Input should be greater than 0, got '-1'"
    )
    assert not (tmp_path / "mlflow.db").exists()


def test_a_run_logs_exactly_its_models_options(tmp_path):
    args = ["--model", "cornn", "--model-option", "dt=0.05", "--model-option", "imex=true"]
    done = run_arnn(
        "train",
        *ADDING,
        *args,
        "--hidden",
        "4",
        "--val-size",
        "32",
        "--epochs",
        "1",
        "--device",
        "cpu",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    _, run = only_run(f"sqlite:///{tmp_path / 'mlflow.db'}")
    model_params = {k: v for k, v in run.data.params.items() if k.startswith("model.")}
    assert model_params == {
        "model.name": "cornn",
        "model.hidden": "4",
        "model.dt": "0.05",
        "model.gamma": "2.7",
        "model.eps": "4.7",
        "model.imex": "True",
    }
    assert not {"eps", "gamma", "sigma_w", "runtime.kernel"} & set(run.data.params)
    # 2n² + (m+1)n for the cell, n + 1 for the adding task's one output: n = 4, m = 2
    assert run.data.tags["arnn.parameters"] == str(2 * 16 + 3 * 4 + 4 + 1)


def _spec(**params) -> dict:
    return {
        "name": "s",
        "task": "adding",
        "model": "lipschitz",
        "fixed": {"hidden": 8, "epochs": 2, "beta": 0.5},
        "params": params,
        "scheduler": {"type": "none"},
    }


def test_a_spec_fixes_and_searches_a_models_options_by_name():
    spec = parse_spec(_spec(scheme={"type": "categorical", "choices": ["euler", "midpoint"]}))
    config = spec.trial_config({"scheme": "midpoint"})
    assert config.model.options["beta"] == 0.5 and config.model.options["scheme"] == "midpoint"
    with pytest.raises(UsageError) as raised:
        parse_spec(_spec(init_std={"type": "float", "low": 0.0, "high": 2.0}))
    assert "params.init_std.low: model lipschitz: option 'init_std'" in str(raised.value)
    with pytest.raises(UsageError) as raised:
        parse_spec(_spec(alpha={"type": "float", "low": 0.5, "high": 2.0}))
    assert "params.alpha: not a searchable setting" in str(raised.value)


@pytest.mark.parametrize("scheme", ["midpoint", "rk4", "leapfrog"])
def test_the_antisymmetric_models_integrate_with_the_scheme_asked(scheme):
    import torch

    from arnn.kernels.schemes import scheme_scan
    from arnn.models import create_model

    torch.manual_seed(0)
    model = create_model(
        "antisymmetric_gated", input_size=2, output_size=3, hidden=8, scheme=scheme, gamma=0.0
    )
    encoder, x = model.encoder, torch.randn(4, 10, 2)
    a_t = encoder.recurrence_matrix().T.contiguous()
    expected = scheme_scan(
        x, encoder.input, a_t, x.new_zeros(4, 8), encoder.eps, True, False, scheme
    )
    # Equal bits by construction: the encoder calls scheme_scan with these arguments, made
    # by the same ops
    torch.testing.assert_close(encoder(x), expected, rtol=0, atol=0)
    config = TrainConfig.parse({"model": "antisymmetric", "scheme": scheme, "gamma": 0})
    assert config.model.options["scheme"] == scheme and config.model.options["gamma"] == 0.0
