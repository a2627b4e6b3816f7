"""The plain RNNs' `init` option: identity (IRNN, Le et al. 2015) and orthogonal (Saxe et
al. 2014) recurrent weights are what they claim, the default is Appendix C's as before,
`arnn models` lists both RNNs, and a bad value is one line."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from arnn.errors import UsageError
from arnn.models import count_parameters, create_model
from arnn.models._layers import init_input_weight_, init_recurrent_weight_
from tests.conftest import only_run, run_arnn

PLAIN = ["rnn", "relu_rnn"]
ADDING = ["--task", "adding", "--task-option", "length=6", "--task-option", "train_size=128"]
EPS32 = torch.finfo(torch.float32).eps


def _recurrent(model: nn.Module) -> torch.Tensor:
    return model.encoder.rnn.weight_hh_l0.detach()


@pytest.mark.parametrize("name", PLAIN)
@pytest.mark.parametrize("sigma_w", [1.0, 2.0, 0.0])
def test_identity_starts_at_sigma_w_times_i_with_zero_biases(name, sigma_w):
    model = create_model(
        name, input_size=3, output_size=4, hidden=16, init="identity", sigma_w=sigma_w
    )
    # exact: eye_ writes 1s and 0s, times sigma_w (a power of two or zero) is exact
    assert torch.equal(_recurrent(model), sigma_w * torch.eye(16))
    rnn = model.encoder.rnn
    assert torch.equal(rnn.bias_hh_l0, torch.zeros(16))
    assert torch.equal(rnn.bias_ih_l0, torch.zeros(16))


@pytest.mark.parametrize("name", PLAIN)
@pytest.mark.parametrize("sigma_w", [1.0, 0.5])
def test_orthogonal_starts_with_wt_w_equal_to_sigma_w_squared_i(name, sigma_w):
    n = 64
    torch.manual_seed(0)
    w = _recurrent(
        create_model(
            name, input_size=1, output_size=4, hidden=n, init="orthogonal", sigma_w=sigma_w
        )
    ).double()
    # Q comes from a float32 Householder QR and is stored in float32: each entry of QᵀQ
    # is an n-term dot product of unit columns, so its error is a few n·eps32 (QR's
    # backward error is O(n·eps) in the Frobenius norm); 10·n·eps32 ≈ 7.6e-5 bounds it
    # with room, while a Gaussian W (the default) is off by O(1/√n) ≈ 0.1.
    bound = 10 * n * EPS32 * sigma_w**2
    gram = w.T @ w
    assert (gram - sigma_w**2 * torch.eye(n, dtype=torch.float64)).abs().max() < bound
    assert (w @ w.T - sigma_w**2 * torch.eye(n, dtype=torch.float64)).abs().max() < bound
    assert not torch.equal(w, sigma_w * torch.eye(n, dtype=torch.float64))


def test_orthogonal_is_drawn_from_torchs_generator_so_the_runs_seed_fixes_it():
    def drawn(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)  # what arnn.train does before it builds the model
        return _recurrent(
            create_model("rnn", input_size=1, output_size=2, hidden=8, init="orthogonal")
        )

    # exact: the same generator state through the same operations
    assert torch.equal(drawn(3), drawn(3))
    assert not torch.equal(drawn(3), drawn(4))


@pytest.mark.parametrize("name", PLAIN)
def test_the_default_init_is_appendix_c_drawn_as_before(name):
    """Same seed, same draws in the same order as the module did before `init` existed."""
    torch.manual_seed(5)
    model = create_model(name, input_size=2, output_size=3, hidden=12, sigma_w=2.0)
    torch.manual_seed(5)
    reference = nn.RNN(2, 12, batch_first=True)
    init_input_weight_(reference.weight_ih_l0, 2)
    init_recurrent_weight_(reference.weight_hh_l0, 12, 2.0)
    # exact: the same generator state through the same operations
    assert torch.equal(_recurrent(model), reference.weight_hh_l0.detach())
    assert torch.equal(model.encoder.rnn.weight_ih_l0.detach(), reference.weight_ih_l0.detach())


@pytest.mark.parametrize(("name", "phi"), [("rnn", torch.tanh), ("relu_rnn", torch.relu)])
def test_one_step_is_phi_of_w_h_plus_v_x(name, phi):
    torch.manual_seed(0)
    model = create_model(name, input_size=3, output_size=2, hidden=5, init="orthogonal").double()
    rnn = model.encoder.rnn
    x, h0 = torch.randn(4, 1, 3, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    expected = phi(h0 @ rnn.weight_hh_l0.T + x[:, 0] @ rnn.weight_ih_l0.T)  # biases are 0
    # float64, the same products in another order: rounding only
    torch.testing.assert_close(model.encoder(x, h0), expected, rtol=1e-12, atol=1e-12)


def test_the_gated_baselines_take_no_init():
    with pytest.raises(UsageError, match="model gru: unknown option 'init' .allowed: sigma_w."):
        create_model("gru", input_size=1, output_size=2, hidden=4, init="identity")


def test_arnn_models_lists_both_plain_rnns_with_their_counts_and_init(tmp_path):
    done = run_arnn("models", "--task", "mnist", "--hidden", "100", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line for line in done.stdout.splitlines()[1:]}
    n, m = 100, 1
    for name in PLAIN:
        # torch's two bias vectors: n² + mn + 2n, then the 10-class head
        assert rows[name].split()[2] == str(n * n + m * n + 2 * n + 10 * n + 10), rows[name]
        assert "sigma_w=1.0 (>= 0); init=default (default | identity | orthogonal)" in rows[name]
    built = create_model("relu_rnn", input_size=1, output_size=10, hidden=100, init="identity")
    assert count_parameters(built) == 11_310


def test_a_bad_init_is_one_line_before_mlflow(tmp_path):
    done = run_arnn(
        "train", *ADDING, "--model", "relu_rnn", "--model-option", "init=eye", cwd=tmp_path
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "arnn: error: --model-option: model relu_rnn: option 'init': "
        "Input should be 'default', 'identity' or 'orthogonal', got 'eye'"
    )
    assert not (tmp_path / "mlflow.db").exists()


def test_arnn_train_tracks_a_run_with_an_init(tmp_path):
    """One value (the seeded one): every value takes the same path to the run."""
    init = "orthogonal"
    done = run_arnn(
        "train",
        *ADDING,
        "--model",
        "rnn",
        "--model-option",
        f"init={init}",
        *("--hidden", "4", "--val-size", "32", "--epochs", "1", "--device", "cpu"),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    _, run = only_run(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert run.info.status == "FINISHED"
    assert run.data.params["model.init"] == init and run.data.params["model.sigma_w"] == "1.0"
