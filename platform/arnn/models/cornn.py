"""coRNN, the coupled oscillatory RNN (Rusch & Mishra, ICLR 2021), as its official code
computes it (tk-rusch/coRNN, sMNIST/network.py).

Two states, y (position) and z (velocity), both starting at 0; σ = tanh:

    z_t = z_{t-1} + dt * (σ(W y_{t-1} + 𝒲 z_{t-1} + V u_t + b) - γ y_{t-1} - ε z_{t-1})
    y_t = y_{t-1} + dt * z_t                      (the new z: symplectic-Euler style)

and the classifier reads y_T. This explicit damping is what produced the published
numbers; `imex: true` takes the paper's implicit form instead,

    z_t = (z_{t-1} + dt * (σ(...) - γ y_{t-1})) / (1 + dt ε).

Parameterisation and initialisation as the official MNIST code: one `nn.Linear(m + 2n, n)`
(`cell`) over cat(u, z, y), so its weight's columns [0, m) are V, [m, m + n) are 𝒲 (on z)
and [m + n, m + 2n) are W (on y), and its bias is b; torch's default Linear
initialisation, i.e. every weight and bias entry ~ U(-1/√(m + 2n), 1/√(m + 2n)) (the fan-in
is the whole concatenation). With the readout Linear(n, 10), also torch's default, that is
2n² + (m + 11)n + 10 parameters: (m + 2n)n + n in the cell, 10n + 10 in the readout.

The recurrence runs as one autograd Function (CoRNNScan) in the manner of
arnn.kernels.eager: the input projection of every step as one matmul before the loop, a
time-major buffer that holds it, then the activations, then their gradients, and a
hand-written backward that carries only (dy, dz) back in time.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from arnn.kernels.eager import (
    input_map_grads,
    refuse_second_backward,
    tanh_backward,
)
from arnn.models._layers import SequenceClassifier
from arnn.models.catalog import CoRNNOptions


def step_coefficients(dt: float, gamma: float, eps: float, imex: bool):
    """(c_z, c_y, c_a) with z_t = c_z z_{t-1} + c_y y_{t-1} + c_a σ(...) in either form."""
    if imex:
        c = 1.0 / (1.0 + dt * eps)
        return c, -c * dt * gamma, c * dt
    return 1.0 - dt * eps, -dt * gamma, dt


class CoRNNScan(torch.autograd.Function):
    """out = CoRNNScan.apply(x [B,T,m], v [n,m], bias [n], r_t [2n,n], y0 [B,n], z0 [B,n],
    dt, gamma, eps, imex, keep, retain=False)

    r_t is Rᵀ for R = [𝒲 | W] [n, 2n], which acts on the joint state s = [z | y]. `out` is
    every y_t [B, T, n] when `keep`, else y_T [B, n]. The backward overwrites the saved
    activations and so runs once, unless `retain` (then it works on a copy: for gradcheck,
    which calls it many times). In row convention:

        pre_t = s_{t-1} Rᵀ + u_t,   a_t = tanh(pre_t),   u = x Vᵀ + b (one matmul)
        z_t = c_z z_{t-1} + c_y y_{t-1} + c_a a_t,   y_t = y_{t-1} + dt z_t

    Backward, with dy, dz the gradients of y_t, z_t:

        dz~ = dz + dt dy,   g_t = c_a dz~ ⊙ (1 - a_t²)   (= dL/dpre_t = dL/du_t)
        ds_{t-1} = [c_z dz~ | dy + c_y dz~] + g_t R,   dRᵀ += s_{t-1}ᵀ g_t
    """

    @staticmethod
    def forward(ctx, x, v, bias, r_t, y0, z0, dt, gamma, eps, imex, keep, retain=False):
        batch, steps, inputs = x.shape
        hidden = r_t.shape[1]
        c_z, c_y, c_a = step_coefficients(dt, gamma, eps, imex)
        x_rows = x.transpose(0, 1).reshape(steps * batch, inputs)
        work = torch.addmm(bias, x_rows, v.T).view(steps, batch, hidden)
        s = torch.cat((z0, y0), dim=1)
        states = [s]
        for t in range(steps):
            a = work[t].addmm_(s, r_t).tanh_()
            z, y = s[:, :hidden], s[:, hidden:]
            new = torch.empty_like(s)
            z_new, y_new = new[:, :hidden], new[:, hidden:]
            torch.mul(z, c_z, out=z_new)
            z_new.add_(y, alpha=c_y).add_(a, alpha=c_a)
            torch.add(y, z_new, alpha=dt, out=y_new)
            s = new
            states.append(s)
        ctx.save_for_backward(r_t, v, x_rows)
        ctx.work, ctx.states = work, states
        ctx.coefficients = (c_z, c_y, c_a, dt)
        ctx.keep, ctx.retain, ctx.input_shape = keep, retain, x.shape
        if keep:
            return torch.stack([s[:, hidden:] for s in states[1:]], dim=1)
        return s[:, hidden:].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        refuse_second_backward(ctx.work, "CoRNNScan")
        r_t, v, x_rows = ctx.saved_tensors
        work, states = ctx.work, ctx.states
        if ctx.retain:
            work = work.clone()
        else:
            ctx.work = ctx.states = None
        c_z, c_y, c_a, dt = ctx.coefficients
        r = r_t.T
        hidden, steps = r_t.shape[1], work.shape[0]
        grad_r_t = torch.zeros_like(r_t)
        ds = torch.zeros_like(states[0])
        if not ctx.keep:
            ds[:, hidden:] = grad_out
        # g_t is kept without its factor c_a, which the products take as alpha and the
        # input projection's gradients receive in one multiplication at the end.
        for t in range(steps - 1, -1, -1):
            dz, dy = ds[:, :hidden], ds[:, hidden:]
            if ctx.keep:
                dy = dy + grad_out[:, t]
            dz_total = torch.add(dz, dy, alpha=dt)
            g = tanh_backward(dz_total, work[t], out=work[t])
            grad_r_t.addmm_(states[t].T, g, alpha=c_a)
            new = torch.empty_like(ds)
            torch.mul(dz_total, c_z, out=new[:, :hidden])
            torch.add(dy, dz_total, alpha=c_y, out=new[:, hidden:])
            ds = new.addmm_(g, r, alpha=c_a)
        grad_pre = work.view(steps * work.shape[1], hidden).mul_(c_a)  # dL/du, time-major
        grad_x, grad_v, grad_bias = input_map_grads(ctx, grad_pre, v, x_rows)
        grad_y0, grad_z0 = ds[:, hidden:], ds[:, :hidden]
        return grad_x, grad_v, grad_bias, grad_r_t, grad_y0, grad_z0, *([None] * 6)


class CoRNNEncoder(nn.Module):
    """x [B, T, m] -> y_T [B, n] (`forward`) or every y_t [B, T, n] (`states`).

    h0 is y_0 (zeros when None); z0, the initial velocity, defaults to zeros too.
    """

    def __init__(
        self,
        input_size: int,
        hidden: int,
        *,
        dt: float = 0.042,
        gamma: float = 2.7,
        eps: float = 4.7,
        imex: bool = False,
    ):
        super().__init__()
        self.input_size = input_size
        self.hidden = hidden
        self.dt, self.gamma, self.eps, self.imex = dt, gamma, eps, imex
        self.retain_backward = False  # True lets backward run more than once (gradcheck)
        # cat(u, z, y) -> n, as the official code; torch's default init is the paper's.
        self.cell = nn.Linear(input_size + 2 * hidden, hidden)

    def input_weight(self) -> torch.Tensor:
        """V [n, m]."""
        return self.cell.weight[:, : self.input_size]

    def recurrent_weight(self) -> torch.Tensor:
        """R = [𝒲 | W] [n, 2n]: the weights on z, then on y."""
        return self.cell.weight[:, self.input_size :]

    def forward(self, x, h0=None, z0=None) -> torch.Tensor:
        return self._scan(x, h0, z0, keep_states=False)

    def states(self, x, h0=None, z0=None) -> torch.Tensor:
        return self._scan(x, h0, z0, keep_states=True)

    def _scan(self, x, h0, z0, keep_states: bool) -> torch.Tensor:
        zeros = x.new_zeros(x.shape[0], self.hidden)
        y0 = zeros if h0 is None else h0
        z0 = zeros if z0 is None else z0
        r_t = self.recurrent_weight().T.contiguous()
        return CoRNNScan.apply(
            x,
            self.input_weight(),
            self.cell.bias,
            r_t,
            y0,
            z0,
            self.dt,
            self.gamma,
            self.eps,
            self.imex,
            keep_states,
            self.retain_backward,
        )


def cornn(*, input_size, output_size, hidden, options: CoRNNOptions):
    encoder = CoRNNEncoder(input_size, hidden, **options.model_dump())
    return SequenceClassifier(encoder, hidden, output_size)
