from __future__ import annotations

import pytest
import torch

from arnn.kernels.eager import RecurrenceScan
from arnn.models import create_model


def _scan_inputs(gated: bool, seed: int = 0):
    torch.manual_seed(seed)
    width = 2 if gated else 1
    return (
        torch.randn(3, 6, 2, dtype=torch.float64),  # x
        torch.randn(width * 5, 2, dtype=torch.float64),  # weight
        torch.randn(width * 5, dtype=torch.float64),  # bias
        torch.randn(5, 5, dtype=torch.float64),  # a_t
        torch.randn(3, 5, dtype=torch.float64),  # h0
    )


@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("keep", [False, True])
def test_hand_written_backward_matches_finite_differences(gated, keep):
    """Each input's gradient against a central difference along a random direction
    (gradcheck would call the once-only backward many times)."""
    inputs = _scan_inputs(gated)

    def run(*tensors):
        return RecurrenceScan.apply(*tensors, 0.3, gated, keep)

    weights = torch.randn_like(run(*inputs))
    leaves = [t.clone().requires_grad_() for t in inputs]
    grads = torch.autograd.grad((run(*leaves) * weights).sum(), leaves)
    step = 1e-6
    for i, grad in enumerate(grads):
        direction = torch.randn_like(inputs[i])
        plus = [t + step * direction if j == i else t for j, t in enumerate(inputs)]
        minus = [t - step * direction if j == i else t for j, t in enumerate(inputs)]
        numeric = ((run(*plus) - run(*minus)) * weights).sum() / (2 * step)
        assert (grad * direction).sum().item() == pytest.approx(numeric.item(), rel=1e-6)


def test_a_second_backward_is_refused():
    leaves = [t.requires_grad_() for t in _scan_inputs(gated=False)]
    out = RecurrenceScan.apply(*leaves, 0.3, False, False).sum()
    out.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="runs once"):
        out.backward()


def _autograd_loop(model, x):
    """The plain autograd formulation of Eq. 12 / 13, for comparison."""
    enc = model.encoder
    a_t = enc.recurrence_matrix().T
    u = enc.input(x)
    h = x.new_zeros(x.shape[0], enc.hidden)
    for u_t in u.unbind(1):
        pre_h = h @ a_t + u_t[:, : enc.hidden]
        step = torch.tanh(pre_h)
        if enc.gated:
            step = step * torch.sigmoid(h @ a_t + u_t[:, enc.hidden :])
        h = h + enc.eps * step
    return model.head(h)


@pytest.mark.parametrize("name", ["antisymmetric", "antisymmetric_gated", "ablation"])
def test_model_gradients_equal_the_autograd_loop(name):
    torch.manual_seed(0)
    model = create_model(name, input_size=3, output_size=4, hidden=16, eps=0.1, sigma_w=2.0)
    model = model.double()
    x = torch.randn(5, 40, 3, dtype=torch.float64)
    grads = []
    for forward in (model, lambda x: _autograd_loop(model, x)):
        model.zero_grad()
        forward(x).sin().sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for key in grads[0]:
        torch.testing.assert_close(grads[0][key], grads[1][key], rtol=1e-10, atol=1e-12)
