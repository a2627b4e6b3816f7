from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from arnn.kernels import eager_scan
from arnn.kernels.schemes import SCHEMES, scheme_scan
from arnn.models import create_model
from tests.buffers import assert_kept_buffers_change_nothing

F64 = torch.float64
HAND_WRITTEN = ("midpoint", "rk4", "leapfrog")


def _problem(gated: bool, batch=3, steps=5, inputs=2, hidden=4, gamma=0.1, seed=0):
    """x, V (weight), b, a_t = A^T with A = W - W^T - gamma I, h0; float64."""
    torch.manual_seed(seed)
    width = 2 if gated else 1
    w = torch.randn(hidden, hidden, dtype=F64)
    a = w - w.T - gamma * torch.eye(hidden, dtype=F64)
    return (
        torch.randn(batch, steps, inputs, dtype=F64),
        torch.randn(width * hidden, inputs, dtype=F64),
        torch.randn(width * hidden, dtype=F64),
        a.T.contiguous(),
        torch.randn(batch, hidden, dtype=F64),
    )


def _run(scheme, gated, keep, x, weight, bias, a_t, h0, eps=0.3, activation="tanh"):
    layer = SimpleNamespace(weight=weight, bias=bias)
    return scheme_scan(x, layer, a_t, h0, eps, gated, keep, scheme, activation)


def _f(h, x_t, weight, bias, a_t, gated):
    """f(h, x) written out: tanh(A h + V x + b), or the gated cell's sigmoid * tanh."""
    hidden = a_t.shape[0]
    a = a_t.T
    if not gated:
        return torch.tanh(h @ a.T + x_t @ weight.T + bias)
    v_h, v_z, b_h, b_z = weight[:hidden], weight[hidden:], bias[:hidden], bias[hidden:]
    return torch.sigmoid(h @ a.T + x_t @ v_z.T + b_z) * torch.tanh(h @ a.T + x_t @ v_h.T + b_h)


def _reference(scheme, gated, x, weight, bias, a_t, h0, eps=0.3):
    """Every state h_1 .. h_T [B, T, H], each scheme's formula written out, with autograd."""
    h, before, states = h0, None, []
    for x_t in x.unbind(1):

        def f(s, x_t=x_t):
            return _f(s, x_t, weight, bias, a_t, gated)

        if scheme == "euler":
            new = h + eps * f(h)
        elif scheme == "midpoint":
            new = h + eps * f(h + eps / 2 * f(h))
        elif scheme == "rk4":
            k1 = f(h)
            k2 = f(h + eps / 2 * k1)
            k3 = f(h + eps / 2 * k2)
            k4 = f(h + eps * k3)
            new = h + eps / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        elif before is None:  # leapfrog's first step is one Euler step
            new = h + eps * f(h)
        else:
            new = before + 2 * eps * f(h)
        before, h = h, new
        states.append(h)
    return torch.stack(states, dim=1)


# -- the formulas -------------------------------------------------------------------------


@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_first_step_is_the_formula(scheme, gated):
    x, weight, bias, a_t, h0 = _problem(gated, steps=1)
    eps = 0.3

    def f(s):
        return _f(s, x[:, 0], weight, bias, a_t, gated)

    if scheme in ("euler", "leapfrog"):
        expected = h0 + eps * f(h0)
    elif scheme == "midpoint":
        expected = h0 + eps * f(h0 + eps / 2 * f(h0))
    else:
        k1 = f(h0)
        k2 = f(h0 + eps / 2 * k1)
        k3 = f(h0 + eps / 2 * k2)
        k4 = f(h0 + eps * k3)
        expected = h0 + eps / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    out = _run(scheme, gated, False, x, weight, bias, a_t, h0, eps)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("keep", [False, True])
@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_first_steps_are_the_formula(scheme, gated, keep):
    inputs = _problem(gated, steps=6)
    expected = _reference(scheme, gated, *inputs)
    out = _run(scheme, gated, keep, *inputs)
    torch.testing.assert_close(out, expected if keep else expected[:, -1], rtol=1e-12, atol=1e-12)


def test_leapfrog_second_step_reaches_back_two_states():
    x, weight, bias, a_t, h0 = _problem(gated=False, steps=2)
    states = _run("leapfrog", False, True, x, weight, bias, a_t, h0)
    h1 = h0 + 0.3 * _f(h0, x[:, 0], weight, bias, a_t, False)
    h2 = h0 + 2 * 0.3 * _f(h1, x[:, 1], weight, bias, a_t, False)
    torch.testing.assert_close(states[:, 0], h1, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(states[:, 1], h2, rtol=1e-12, atol=1e-12)


def test_euler_is_the_eager_scan():
    x, weight, bias, a_t, h0 = _problem(gated=True)
    layer = SimpleNamespace(weight=weight, bias=bias)
    # Equal bits by construction: scheme_scan's euler with tanh is a call of eager_scan
    torch.testing.assert_close(
        scheme_scan(x, layer, a_t, h0, 0.3, True, True, "euler"),
        eager_scan(x, layer, a_t, h0, 0.3, True, True),
        rtol=0,
        atol=0,
    )


def test_unknown_scheme_and_activation_are_refused():
    inputs = _problem(gated=False)
    with pytest.raises(ValueError, match="scheme must be one of"):
        _run("heun", False, False, *inputs)
    with pytest.raises(ValueError, match="activation must be one of"):
        _run("rk4", False, False, *inputs, activation="relu")


# -- gradients ----------------------------------------------------------------------------


class _Rerun(torch.autograd.Function):
    """scheme_scan, whose every backward runs a fresh forward and the hand-written backward:
    gradcheck calls a backward many times on one graph, the scan's runs once."""

    @staticmethod
    def forward(ctx, scheme, gated, keep, *tensors):
        ctx.options = (scheme, gated, keep)
        ctx.save_for_backward(*tensors)
        return _run(scheme, gated, keep, *tensors)

    @staticmethod
    def backward(ctx, grad):
        tensors = [t.detach().requires_grad_() for t in ctx.saved_tensors]
        with torch.enable_grad():
            out = _run(*ctx.options, *tensors)
            grads = torch.autograd.grad(out, tensors, grad)
        return (None, None, None, *grads)


@pytest.mark.parametrize("keep", [False, True])
@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("scheme", HAND_WRITTEN)
def test_hand_written_backward_passes_gradcheck(scheme, gated, keep):
    """x, V, b, a_t and h0 at once."""
    inputs = [t.requires_grad_() for t in _problem(gated, batch=2, steps=4, hidden=3)]
    assert torch.autograd.gradcheck(
        lambda *tensors: _Rerun.apply(scheme, gated, keep, *tensors), inputs
    )


@pytest.mark.parametrize("keep", [False, True])
@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("scheme", HAND_WRITTEN)
def test_gradients_equal_autograd_through_the_reference(scheme, gated, keep):
    inputs = _problem(gated, steps=30, hidden=6, gamma=0.01, seed=1)
    weights = torch.randn_like(_reference(scheme, gated, *inputs)) if keep else None
    grads = []
    for forward in (_run, None):
        leaves = [t.clone().requires_grad_() for t in inputs]
        if forward is None:
            out = _reference(scheme, gated, *leaves)
            out = out if keep else out[:, -1]
        else:
            out = forward(scheme, gated, keep, *leaves)
        loss = (out * weights).sum() if keep else out.sin().sum()
        grads.append(torch.autograd.grad(loss, leaves))
    for mine, theirs in zip(*grads, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("scheme", HAND_WRITTEN)
def test_a_second_backward_is_refused(scheme):
    leaves = [t.requires_grad_() for t in _problem(gated=False)]
    out = _run(scheme, False, False, *leaves).sum()
    out.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="runs once"):
        out.backward()


@pytest.mark.parametrize("scheme", HAND_WRITTEN)
@pytest.mark.parametrize("gated", [False, True])
def test_buffers_kept_between_batches_change_nothing(scheme, gated):
    """The encoder's workspace hands one batch's buffers to the next (tests/buffers.py)."""
    torch.manual_seed(0)
    name = "antisymmetric_gated" if gated else "antisymmetric"
    options = {"scheme": scheme, "gamma": 0.0}
    model = create_model(name, input_size=2, output_size=3, hidden=6, model_options=options)
    x, other = torch.randn(4, 9, 2, dtype=F64), torch.randn(4, 5, 2, dtype=F64)
    assert_kept_buffers_change_nothing(model.to(F64).eval(), x, other)


def test_float32_agrees_with_float64():
    inputs = _problem(gated=True, steps=40, hidden=8, gamma=0.01)
    for scheme in HAND_WRITTEN:
        torch.testing.assert_close(
            _run(scheme, True, True, *[t.float() for t in inputs]),
            _run(scheme, True, True, *inputs).float(),
            rtol=1e-4,
            atol=1e-5,
        )


# -- stability on the linear test problem -------------------------------------------------
# f(h) = A h (activation "identity", no input), A = Q diag(omega_j J) Q^T antisymmetric,
# J = [[0, 1], [-1, 0]]: eigenvalues +-i omega_j. A one-step scheme with stability function
# R multiplies the j-th plane's component by R(eps A) there, whose norm is |R(i eps omega_j)|
# exactly, so ||h_n||^2 = sum_j |R(i y_j)|^(2n) ||P_j h_0||^2 with y_j = eps omega_j.

STEPS = 10_000
STABILITY = {
    "euler": lambda z: 1 + z,
    "midpoint": lambda z: 1 + z + z**2 / 2,
    "rk4": lambda z: 1 + z + z**2 / 2 + z**3 / 6 + z**4 / 24,
}


def _linear_problem(ys, eps=0.5, batch=2, seed=0):
    """a_t, and h0 [batch, 2 len(ys)] with its squared norm in each plane [batch, len(ys)]."""
    torch.manual_seed(seed)
    planes = len(ys)
    q, _ = torch.linalg.qr(torch.randn(2 * planes, 2 * planes, dtype=F64))
    block = torch.zeros(2 * planes, 2 * planes, dtype=F64)
    for j, y in enumerate(ys):
        block[2 * j, 2 * j + 1], block[2 * j + 1, 2 * j] = y / eps, -y / eps
    a = q @ block @ q.T
    coefficients = torch.randn(batch, 2 * planes, dtype=F64)
    h0 = coefficients @ q.T
    return a.T.contiguous(), h0, coefficients.pow(2).view(batch, planes, 2).sum(-1)


def _linear_norms(scheme, ys, eps=0.5, steps=STEPS):
    """||h_n|| / ||h_0|| for n = 1 .. steps [batch, steps], through scheme_scan itself."""
    a_t, h0, plane_norms = _linear_problem(ys, eps)
    batch, hidden = h0.shape
    layer = SimpleNamespace(weight=torch.zeros(hidden, 1, dtype=F64), bias=a_t.new_zeros(hidden))
    x = torch.zeros(batch, steps, 1, dtype=F64)
    with torch.no_grad():
        states = scheme_scan(x, layer, a_t, h0, eps, False, True, scheme, "identity")
    return states.norm(dim=-1) / h0.norm(dim=-1, keepdim=True), h0, plane_norms


def _expected_ratio(scheme, ys, h0, plane_norms, steps=STEPS):
    moduli = torch.tensor([abs(STABILITY[scheme](1j * y)) for y in ys], dtype=F64)
    return (plane_norms * moduli.pow(2 * steps)).sum(-1).sqrt() / h0.norm(dim=-1)


@pytest.mark.parametrize(
    ("scheme", "ys", "grows"),
    [
        ("euler", (0.01, 0.02), True),  # |1 + iy| > 1 for every y != 0
        ("midpoint", (0.1, 0.3), True),  # |R(iy)| = sqrt(1 + y^4 / 4)
        ("rk4", (0.5, 2.75), False),  # |R(iy)| <= 1 for |y| <= 2 sqrt(2)
        ("rk4", (0.5, 2.83), True),  # just beyond 2 sqrt(2) = 2.8284
    ],
)
def test_one_step_schemes_follow_their_stability_function(scheme, ys, grows):
    ratios, h0, plane_norms = _linear_norms(scheme, ys)
    expected = _expected_ratio(scheme, ys, h0, plane_norms)
    torch.testing.assert_close(ratios[:, -1], expected, rtol=1e-8, atol=1e-300)
    if grows:
        assert (ratios[:, -1] > 1.1).all()
    else:
        assert (ratios <= 1 + 1e-12).all()


def test_midpoint_grows_by_its_largest_modes_factor():
    """h0 in the plane of the largest mode only: the ratio is |R(i eps omega)|^10000."""
    y = 0.3
    ratios, _, plane_norms = _linear_norms("midpoint", (y,))
    factor = math.sqrt(1 + y**4 / 4) ** STEPS  # e^(10000 * y^4 / 8) to first order: ~ 2.5e4
    assert factor == pytest.approx(abs(STABILITY["midpoint"](1j * y)) ** STEPS, rel=1e-12)
    assert ratios[:, -1].tolist() == pytest.approx([factor] * len(ratios), rel=1e-8)


def test_leapfrog_is_bounded_below_one():
    """Per plane z_n = alpha xi_1^n + beta xi_2^n with |xi| = 1 for |y| < 1 and, after the
    Euler start, |alpha| + |beta| = |z_0| / sqrt(1 - y^2), |alpha| - |beta| = |z_0|: neither
    growth nor decay."""
    ys = (0.3, 0.95)
    ratios, _, _ = _linear_norms("leapfrog", ys)
    assert (ratios >= 1 - 1e-9).all()
    assert (ratios <= 1 / math.sqrt(1 - max(ys) ** 2) + 1e-9).all()
    assert ratios.max() > 1.5  # the parasitic mode of the 0.95 plane shows


def test_leapfrog_blows_up_beyond_one():
    """|y| > 1: the roots are i (y +- sqrt(y^2 - 1)), the larger of modulus
    y + sqrt(y^2 - 1) > 1; at y = 1.0001 ~ e^(0.01414 n), e^141 after 10,000 steps."""
    y = 1.0001
    ratios, _, _ = _linear_norms("leapfrog", (0.3, y))
    rate = math.log(y + math.sqrt(y**2 - 1))
    half = STEPS // 2
    growth = torch.log(ratios[:, -1] / ratios[:, half - 1]) / (STEPS - half)
    assert growth.tolist() == pytest.approx([rate] * len(growth), rel=1e-3)
    assert (ratios[:, -1] > 1e50).all()
