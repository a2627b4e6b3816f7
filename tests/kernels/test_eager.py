from __future__ import annotations

import pytest
import torch

from arnn.kernels.eager import RecurrenceScan
from arnn.models import create_model


@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("keep", [False, True])
def test_hand_written_backward_passes_gradcheck(gated, keep):
    torch.manual_seed(0)
    width = 2 if gated else 1
    u = torch.randn(3, 6, width * 5, dtype=torch.float64, requires_grad=True)
    a_t = torch.randn(5, 5, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda u, a_t, h0: RecurrenceScan.apply(u, a_t, h0, 0.3, gated, keep), (u, a_t, h0)
    )


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
