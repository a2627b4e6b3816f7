"""coRNN and Lipschitz RNN: counts, the equations, the initialisation, the hand-written
backward and the options schema (see docs/models.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from arnn.errors import UsageError
from arnn.models._registry import count_parameters, create_model, validate_model_options
from arnn.models.cornn import CoRNNEncoder
from arnn.models.lipschitz import LipschitzEncoder

CORNN = {"dt": 0.1, "gamma": 0.7, "eps": 1.3}  # larger than the defaults' effect per step
LIPSCHITZ = {"eps": 0.2, "beta": 0.6, "gamma": 0.05, "init_std": 4.0}


@pytest.mark.parametrize(
    ("name", "options", "input_size", "hidden", "expected"),
    [
        ("cornn", {}, 1, 128, 34_314),
        ("cornn", {}, 1, 256, 134_154),
        ("cornn", {}, 96, 128, 46_474),
        ("cornn", {"imex": True}, 1, 128, 34_314),
        ("lipschitz", {}, 1, 128, 34_314),
        ("lipschitz", {}, 96, 128, 46_474),
        ("lipschitz", {"scheme": "midpoint"}, 1, 128, 34_314),
    ],
)
def test_parameter_counts_match_the_table(name, options, input_size, hidden, expected):
    model = create_model(
        name, input_size=input_size, output_size=10, hidden=hidden, model_options=options
    )
    assert count_parameters(model) == expected
    n, m = hidden, input_size
    assert expected == 2 * n * n + (m + 11) * n + 10


# ---- the equations, written out per sample in float64 (column vectors, as the paper) ----


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def _cornn_reference(enc: CoRNNEncoder, x, y0, z0) -> np.ndarray:
    m, n = enc.input_size, enc.hidden
    weight, b = _np(enc.cell.weight), _np(enc.cell.bias)
    v, w_z, w_y = weight[:, :m], weight[:, m : m + n], weight[:, m + n :]
    dt, gamma, eps = enc.dt, enc.gamma, enc.eps
    out = np.empty((x.shape[0], x.shape[1], n))
    for row in range(x.shape[0]):
        y, z = y0[row].copy(), z0[row].copy()
        for t in range(x.shape[1]):
            drive = np.tanh(w_y @ y + w_z @ z + v @ x[row, t] + b)
            if enc.imex:
                z = (z + dt * (drive - gamma * y)) / (1 + dt * eps)
            else:
                z = z + dt * (drive - gamma * y - eps * z)
            y = y + dt * z
            out[row, t] = y
    return out


def _lipschitz_reference(enc: LipschitzEncoder, x, h0) -> np.ndarray:
    n, beta, gamma, eps = enc.hidden, enc.beta, enc.gamma, enc.eps
    b_, c_ = _np(enc.B), _np(enc.C)
    a = beta * (b_ - b_.T) + (1 - beta) * (b_ + b_.T) - gamma * np.eye(n)
    w = beta * (c_ - c_.T) + (1 - beta) * (c_ + c_.T) - gamma * np.eye(n)
    e, b = _np(enc.E.weight), _np(enc.E.bias)
    out = np.empty((x.shape[0], x.shape[1], n))
    for row in range(x.shape[0]):
        h = h0[row].copy()
        for t in range(x.shape[1]):
            drive = e @ x[row, t] + b

            def f(state, drive=drive):
                return a @ state + np.tanh(w @ state + drive)

            if enc.scheme == "euler":
                h = h + eps * f(h)
            else:
                h = h + eps * f(h + eps / 2 * f(h))
            out[row, t] = h
    return out


def _randomised(model: nn.Module, seed: int) -> nn.Module:
    """The model in float64 with every encoder parameter redrawn at order one."""
    torch.manual_seed(seed)
    model = model.double()
    with torch.no_grad():
        for param in model.encoder.parameters():
            param.normal_(0.0, 0.5)
    return model


@pytest.mark.parametrize("imex", [False, True])
@pytest.mark.parametrize("steps", [1, 5])
def test_cornn_steps_equal_the_hand_written_equations(imex, steps):
    options = {**CORNN, "imex": imex}
    model = create_model("cornn", input_size=3, output_size=10, hidden=6, model_options=options)
    enc = _randomised(model, seed=steps).encoder
    x = torch.randn(4, steps, 3, dtype=torch.float64)
    y0, z0 = torch.randn(2, 4, 6, dtype=torch.float64)
    expected = _cornn_reference(enc, x.numpy(), y0.numpy(), z0.numpy())
    states = enc.states(x, y0, z0).detach().numpy()
    np.testing.assert_allclose(states, expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(enc(x, y0, z0).detach().numpy(), expected[:, -1], rtol=1e-12)
    # and from rest: y0 = z0 = 0
    zeros = np.zeros((4, 6))
    np.testing.assert_allclose(
        enc.states(x).detach().numpy(), _cornn_reference(enc, x.numpy(), zeros, zeros), rtol=1e-12
    )


@pytest.mark.parametrize("scheme", ["euler", "midpoint"])
@pytest.mark.parametrize("steps", [1, 5])
def test_lipschitz_steps_equal_the_hand_written_equations(scheme, steps):
    options = {**LIPSCHITZ, "scheme": scheme}
    model = create_model("lipschitz", input_size=3, output_size=10, hidden=6, model_options=options)
    enc = _randomised(model, seed=steps).encoder
    x = torch.randn(4, steps, 3, dtype=torch.float64)
    h0 = torch.randn(4, 6, dtype=torch.float64)
    expected = _lipschitz_reference(enc, x.numpy(), h0.numpy())
    np.testing.assert_allclose(enc.states(x, h0).detach().numpy(), expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(enc(x, h0).detach().numpy(), expected[:, -1], rtol=1e-12)


# ---- initialisation ----


def test_cornn_starts_with_torchs_default_linear_init_over_the_concatenation():
    torch.manual_seed(0)
    model = create_model("cornn", input_size=1, output_size=10, hidden=256, model_options={})
    cell = model.encoder.cell
    assert cell.weight.shape == (256, 1 + 2 * 256)
    bound = 1 / math.sqrt(1 + 2 * 256)
    for values in (cell.weight, cell.bias):
        assert values.abs().max().item() <= bound
        assert values.abs().max().item() > 0.95 * bound
    assert cell.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    assert model.head.weight.abs().max().item() <= 1 / math.sqrt(256)


def test_lipschitz_starts_with_b_and_c_at_std_init_std_over_n():
    torch.manual_seed(0)
    options = {"init_std": 0.1}
    model = create_model(
        "lipschitz", input_size=4, output_size=10, hidden=256, model_options=options
    )
    enc = model.encoder
    for matrix in (enc.B, enc.C):
        assert matrix.shape == (256, 256)
        assert matrix.std().item() == pytest.approx(0.1 / 256, rel=0.02)
        assert abs(matrix.mean().item()) < 0.1 / 256 * 0.02
    a, w = enc.recurrence_matrices()
    eye = torch.eye(256)
    assert (a + enc.gamma * eye).abs().max().item() < 0.01  # A ≈ W ≈ -γI at the start
    assert (w + enc.gamma * eye).abs().max().item() < 0.01
    assert enc.E.weight.abs().max().item() <= 1 / math.sqrt(4)  # torch's default
    assert enc.E.bias.abs().max().item() <= 1 / math.sqrt(4)


def test_lipschitz_matrices_follow_beta_and_gamma():
    torch.manual_seed(0)
    enc = LipschitzEncoder(2, 8, beta=1.0, gamma=0.3, init_std=8.0)
    a, w = enc.recurrence_matrices()
    eye = torch.eye(8)
    torch.testing.assert_close(a + a.T, -0.6 * eye)  # β = 1: skew-symmetric minus γI
    torch.testing.assert_close(a, enc.B - enc.B.T - 0.3 * eye)
    enc = LipschitzEncoder(2, 8, beta=0.0, gamma=0.3, init_std=8.0)
    a, w = enc.recurrence_matrices()
    torch.testing.assert_close(w, w.T)  # β = 0: symmetric


# ---- the hand-written backward ----


class _States(nn.Module):
    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, *args):
        return self.encoder.states(*args)


MODELS = [
    ("cornn", {**CORNN, "imex": False}),
    ("cornn", {**CORNN, "imex": True}),
    ("lipschitz", {**LIPSCHITZ, "scheme": "euler"}),
    ("lipschitz", {**LIPSCHITZ, "scheme": "midpoint"}),
]


@pytest.mark.parametrize(("name", "options"), MODELS)
@pytest.mark.parametrize("keep", [False, True])
def test_gradients_match_finite_differences(name, options, keep):
    """gradcheck over every parameter, the input and the initial state(s), in float64."""
    model = create_model(name, input_size=2, output_size=10, hidden=4, model_options=options)
    enc = _randomised(model, seed=3).encoder
    enc.retain_backward = True  # gradcheck calls the backward many times
    module = _States(enc) if keep else enc
    prefix = "encoder." if keep else ""
    names = [prefix + key for key, _ in enc.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in enc.parameters()]
    x = torch.randn(3, 5, 2, dtype=torch.float64, requires_grad=True)
    initial = [torch.randn(3, 4, dtype=torch.float64, requires_grad=True)]
    if name == "cornn":
        initial.append(torch.randn(3, 4, dtype=torch.float64, requires_grad=True))
    count = 1 + len(initial)

    def run(*tensors):
        return functional_call(
            module, dict(zip(names, tensors[count:], strict=True)), tensors[:count]
        )

    assert torch.autograd.gradcheck(run, (x, *initial, *params))


def _cornn_loop(enc: CoRNNEncoder, x: torch.Tensor) -> torch.Tensor:
    m, n = enc.input_size, enc.hidden
    weight = enc.cell.weight
    v, w_z, w_y = weight[:, :m], weight[:, m : m + n], weight[:, m + n :]
    y = z = x.new_zeros(x.shape[0], n)
    for u in x.unbind(1):
        drive = torch.tanh(y @ w_y.T + z @ w_z.T + u @ v.T + enc.cell.bias)
        if enc.imex:
            z = (z + enc.dt * (drive - enc.gamma * y)) / (1 + enc.dt * enc.eps)
        else:
            z = z + enc.dt * (drive - enc.gamma * y - enc.eps * z)
        y = y + enc.dt * z
    return y


def _lipschitz_loop(enc: LipschitzEncoder, x: torch.Tensor) -> torch.Tensor:
    a, w = enc.recurrence_matrices()
    h = x.new_zeros(x.shape[0], enc.hidden)
    for u in enc.E(x).unbind(1):

        def f(state, u=u):
            return state @ a.T + torch.tanh(state @ w.T + u)

        if enc.scheme == "euler":
            h = h + enc.eps * f(h)
        else:
            h = h + enc.eps * f(h + enc.eps / 2 * f(h))
    return h


@pytest.mark.parametrize(("name", "options"), MODELS)
def test_custom_backward_agrees_with_autograd_through_the_loop(name, options):
    """float32, 60 steps: every parameter's and the input's gradient."""
    torch.manual_seed(0)
    model = create_model(name, input_size=3, output_size=5, hidden=16, model_options=options)
    loop = _cornn_loop if name == "cornn" else _lipschitz_loop
    x = torch.randn(4, 60, 3)
    target = torch.randint(0, 5, (4,))
    results = []
    for encode in (model.encoder, lambda x: loop(model.encoder, x)):
        model.zero_grad()
        leaf = x.clone().requires_grad_()
        loss = nn.functional.cross_entropy(model.head(encode(leaf)), target)
        loss.backward()
        grads = {key: p.grad.clone() for key, p in model.named_parameters()}
        results.append((loss.item(), leaf.grad, grads))
    (loss, grad_x, grads), (ref_loss, ref_grad_x, ref_grads) = results
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    # float32 over 60 steps: both sides are off the float64 truth by ~1e-6 of the scale
    pairs = [("x", grad_x, ref_grad_x)] + [(key, grads[key], ref_grads[key]) for key in grads]
    for key, got, ref in pairs:
        scale = ref.abs().max().item()
        assert (got - ref).abs().max().item() <= 2e-5 * scale, key


@pytest.mark.parametrize(("name", "options"), MODELS[::2])
def test_a_second_backward_is_refused(name, options):
    model = create_model(name, input_size=2, output_size=3, hidden=4, model_options=options)
    out = model(torch.randn(2, 3, 2)).sum()
    out.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="runs once"):
        out.backward()


# ---- options ----


def test_out_of_range_options_name_the_option_in_one_line():
    with pytest.raises(UsageError) as caught:
        validate_model_options("cornn", {"dt": 0})
    message = str(caught.value)
    assert "\n" not in message
    assert "option 'dt'" in message and "greater than 0" in message
    with pytest.raises(UsageError, match="option 'beta'.*less than or equal to 1"):
        validate_model_options("lipschitz", {"beta": 1.5})
    with pytest.raises(UsageError, match="option 'scheme'.*'euler' or 'midpoint'"):
        validate_model_options("lipschitz", {"scheme": "rk4"})


def test_unknown_options_list_what_is_allowed():
    with pytest.raises(UsageError) as caught:
        validate_model_options("cornn", {"alpha": 1.0})
    message = str(caught.value)
    assert "\n" not in message
    assert "unknown option 'alpha' (allowed: dt, gamma, eps, imex)" in message
    with pytest.raises(UsageError, match=r"allowed: eps, beta, gamma, init_std, scheme"):
        validate_model_options("lipschitz", {"dt": 0.1})


def test_defaults_are_the_published_settings():
    cornn = validate_model_options("cornn", {})
    assert (cornn.dt, cornn.gamma, cornn.eps, cornn.imex) == (0.042, 2.7, 4.7, False)
    lip = validate_model_options("lipschitz", {})
    assert (lip.eps, lip.beta, lip.gamma, lip.init_std, lip.scheme) == (
        0.03,
        0.75,
        0.001,
        0.1,
        "euler",
    )
