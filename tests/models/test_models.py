from __future__ import annotations

import numpy as np
import pytest
import torch

from arnn.errors import UsageError
from arnn.models import count_parameters, create_model, list_models
from arnn.models.antisymmetric import AntisymmetricEncoder


@pytest.mark.parametrize(
    ("model", "hidden", "input_size", "expected"),
    [
        ("antisymmetric", 128, 1, 9_674),
        ("antisymmetric_gated", 128, 1, 9_930),
        ("antisymmetric", 256, 3, 36_234),
        ("antisymmetric_gated", 256, 3, 37_258),
        ("ablation", 196, 3, 41_954),
        ("antisymmetric", 256, 96, 60_042),
        ("antisymmetric_gated", 256, 96, 84_874),
        ("lstm", 128, 1, 68_362),  # torch keeps two bias vectors; the paper's 67,850 has one
    ],
)
def test_parameter_counts_match_the_paper(model, hidden, input_size, expected):
    built = create_model(model, input_size=input_size, output_size=10, hidden=hidden)
    assert count_parameters(built) == expected


@pytest.mark.parametrize("name", list_models())
def test_every_model_maps_sequences_to_outputs_with_finite_gradients(name):
    torch.manual_seed(0)
    model = create_model(name, input_size=3, output_size=7, hidden=12)
    x = torch.randn(5, 9, 3)
    out = model(x)
    assert out.shape == (5, 7)
    out.square().mean().backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, param_name
        assert torch.isfinite(param.grad).all(), param_name
    model.eval()  # UnICORNN's dropout draws a mask per call in training
    states = model.encoder.states(x)
    assert states.shape == (5, 9, 12)
    torch.testing.assert_close(states[:, -1], model.encoder(x))


def test_unknown_model_names_what_exists():
    with pytest.raises(UsageError, match="allowed: ablation, antisymmetric"):
        create_model("transformer", input_size=1, output_size=10, hidden=8)


@pytest.mark.parametrize("gamma", [0.0, 0.01, 1.0])
def test_recurrence_matrix_is_antisymmetric_minus_diffusion(gamma):
    torch.manual_seed(0)
    cell = AntisymmetricEncoder(2, 16, eps=0.1, gamma=gamma, sigma_w=2.0, gated=False)
    a = cell.recurrence_matrix().double()
    torch.testing.assert_close(a + a.T, -2 * gamma * torch.eye(16, dtype=torch.float64))
    w = cell.full_weight()
    # exact: W is zeros with the parameters put above the diagonal, no arithmetic
    assert torch.equal(w, torch.triu(w, diagonal=1)) and w.abs().sum() > 0


def _reference_step(cell: AntisymmetricEncoder, h0: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Eq. 12 / 13 written out by hand in float64 from the cell's own weights."""
    n = cell.hidden
    w_params = cell.weight.detach().double().numpy()
    w = np.zeros((n, n))
    k = 0
    for i in range(n):
        for j in range(i + 1, n):
            w[i, j] = w_params[k]
            k += 1
    a = w - w.T - cell.gamma * np.eye(n)
    v = cell.input.weight.detach().double().numpy()
    b = cell.input.bias.detach().double().numpy()
    out = np.empty_like(h0)
    for row in range(len(h0)):
        candidate = np.tanh(a @ h0[row] + v[:n] @ x[row] + b[:n])
        if cell.gated:
            gate = 1 / (1 + np.exp(-(a @ h0[row] + v[n:] @ x[row] + b[n:])))
            out[row] = h0[row] + cell.eps * gate * candidate
        else:
            out[row] = h0[row] + cell.eps * candidate
    return out


@pytest.mark.parametrize("gated", [False, True])
def test_one_step_equals_the_hand_written_equations(gated):
    torch.manual_seed(1)
    cell = AntisymmetricEncoder(3, 10, eps=0.1, gamma=0.05, sigma_w=2.0, gated=gated).double()
    with torch.no_grad():
        cell.input.bias.normal_()
    h0 = torch.randn(4, 10, dtype=torch.float64)
    x = torch.randn(4, 1, 3, dtype=torch.float64)
    got = cell(x, h0).detach().numpy()
    np.testing.assert_allclose(got, _reference_step(cell, h0.numpy(), x[:, 0].numpy()), rtol=1e-12)


def _norms_over_time(model_name: str, sigma_w: float, steps: int = 1000) -> torch.Tensor:
    torch.manual_seed(0)
    options = {"sigma_w": sigma_w}
    if model_name.startswith("antisymmetric"):
        options.update(eps=0.01, gamma=0.01)
    model = create_model(model_name, input_size=1, output_size=10, hidden=128, **options)
    h0 = torch.randn(8, 128) * 0.1
    with torch.no_grad():
        states = model.encoder.states(torch.zeros(8, steps, 1), h0)
    return states.norm(dim=-1) / h0.norm(dim=-1, keepdim=True), states


def test_antisymmetric_keeps_the_hidden_norm_where_a_tanh_rnn_does_not():
    ratio, _ = _norms_over_time("antisymmetric", sigma_w=1.0)
    assert ratio.min() > 0.5 and ratio.max() < 2.0

    ratio, states = _norms_over_time("rnn", sigma_w=4.0)
    saturated = (states[:, -1].abs() > 0.9).float().mean()
    final = ratio[:, -1]
    assert ((final > 2.0) | (final < 0.5)).all()
    assert saturated > 0.5 or (final < 0.5).all()


def test_lstm_forget_gate_bias_starts_at_one():
    model = create_model("lstm", input_size=1, output_size=10, hidden=8)
    rnn = model.encoder.rnn
    total = rnn.bias_ih_l0 + rnn.bias_hh_l0
    assert torch.equal(total[8:16], torch.ones(8))  # exact: 1.0 + 0.0
    assert total[:8].abs().sum() == 0 and total[16:].abs().sum() == 0


def test_initialisation_follows_appendix_c():
    torch.manual_seed(0)
    model = create_model("antisymmetric", input_size=4, output_size=10, hidden=256, sigma_w=2.0)
    enc = model.encoder
    assert enc.input.weight.std().item() == pytest.approx(1 / 4**0.5, rel=0.1)
    assert enc.weight.std().item() == pytest.approx(2.0 / 256**0.5, rel=0.1)
    assert enc.input.bias.abs().sum() == 0
    zero = create_model("fastrnn", input_size=1, output_size=10, hidden=8, sigma_w=0.0)
    assert zero.encoder.recurrent.abs().sum() == 0
