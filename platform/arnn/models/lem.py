"""LEM, the long expressive memory network (Rusch, Mishra, Erichson, Mahoney, ICLR 2022).

Two states, y and z, each with a learned per-unit step size bounded in (0, dt); z first,
then y uses the new z (docs/models.md):

    Δ̄_t = dt · sigmoid(W_1 y_{t-1} + V_1 u_t + b_1)          (gate of y)
    Δ_t  = dt · sigmoid(W_2 y_{t-1} + V_2 u_t + b_2)          (gate of z)
    z_t  = (1 − Δ_t) ⊙ z_{t-1} + Δ_t ⊙ tanh(W_z y_{t-1} + V_z u_t + b_z)
    y_t  = (1 − Δ̄_t) ⊙ y_{t-1} + Δ̄_t ⊙ tanh(W_y z_t + V_y u_t + b_y)     readout on y_T

The official code's chunk names are swapped against their use; the layout here follows
the equations. Parameters: `input` = [V_1; V_2; V_z; V_y] (4n × m) with b (one bias per
gate, the paper's equations), `recurrent` = [W_1; W_2; W_z] (3n × n) and `transform_z` =
W_y (n × n), which carry a second bias each only with `two_biases` (the PyTorch code's
nn.Linear layout). Every cell weight and bias ~ U(−1/√n, 1/√n); the classifier weight
is Kaiming-normal.

The recurrence runs in one autograd Function (`LEMScan`): the input projection of every
step is one matmul before the loop into a time-major buffer [T, B, 4n]; each step
overwrites its slice with the activations (the two gates' sigmoids, the two tanh
candidates), the backward overwrites those with the pre-activation gradients, and the
weight gradients are single GEMMs after the reverse loop. `h0`, where given, is y_0
(z_0 = 0).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from arnn.kernels.eager import (
    input_map_grads,
    refuse_second_backward,
    sigmoid_backward,
    tanh_backward,
)
from arnn.models._layers import LoopEncoder, SequenceClassifier
from arnn.models.catalog import LEMOptions


class LEMScan(torch.autograd.Function):
    """out = LEMScan.apply(x [B,T,m], v [4n,m], b [4n], w3 [3n,n], b3 [3n] | None,
    wy [n,n], by [n] | None, y0 [B,n], dt, keep)

    `out` is every y state [B, T, n] when `keep`, else y_T [B, n]. The backward overwrites
    the saved activations and runs once, unless `retain_activations` is set (it then works
    on a copy, so that torch.autograd.gradcheck can call it many times).
    """

    retain_activations = False

    @staticmethod
    def forward(ctx, x, v, b, w3, b3, wy, by, y0, dt: float, keep: bool):
        batch, steps, inputs = x.shape
        n = wy.shape[0]
        x_rows = x.transpose(0, 1).reshape(steps * batch, inputs)
        # Rows [0, 3n) of the buffer take y_{t-1} W3^T (+ b3), rows [3n, 4n) z_t W_y^T (+ b_y).
        bias = b if b3 is None else b + torch.cat([b3, by])
        work = torch.addmm(bias, x_rows, v.T).view(steps, batch, 4 * n)
        ys = x.new_empty(steps + 1, batch, n)
        zs = x.new_empty(steps + 1, batch, n)
        ys[0] = y0
        zs[0] = 0
        w3_t, wy_t = w3.T, wy.T
        for t in range(steps):
            y, z = ys[t], zs[t]
            step = work[t]
            gates, cand_z, cand_y = step[:, : 2 * n], step[:, 2 * n : 3 * n], step[:, 3 * n :]
            step[:, : 3 * n].addmm_(y, w3_t)
            gates.sigmoid_()  # s̄, s: Δ̄ = dt s̄, Δ = dt s
            cand_z.tanh_()
            torch.addcmul(z, step[:, n : 2 * n], cand_z - z, value=dt, out=zs[t + 1])
            cand_y.addmm_(zs[t + 1], wy_t).tanh_()
            torch.addcmul(y, step[:, :n], cand_y - y, value=dt, out=ys[t + 1])
        ctx.save_for_backward(x_rows, v, w3, wy)
        ctx.work, ctx.ys, ctx.zs = work, ys, zs
        ctx.dt, ctx.keep, ctx.input_shape = dt, keep, x.shape
        ctx.has_b3 = b3 is not None
        states = ys[1:]
        return states.transpose(0, 1) if keep else states[-1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        refuse_second_backward(ctx.work, "LEMScan")
        x_rows, v, w3, wy = ctx.saved_tensors
        work, ys, zs, dt = ctx.work, ctx.ys, ctx.zs, ctx.dt
        if LEMScan.retain_activations:
            work = work.clone()
        else:
            ctx.work = ctx.ys = ctx.zs = None
        steps, batch, n = ys.shape[0] - 1, ys.shape[1], ys.shape[2]
        # Every pre-activation gradient carries the factor dt; g_t is computed without it,
        # which the products take as alpha and the parameter gradients get at the end.
        if ctx.keep:
            dy = torch.zeros_like(ys[0])
        else:
            dy = grad_out.contiguous()
        dz = torch.zeros_like(zs[0])
        for t in range(steps - 1, -1, -1):
            if ctx.keep:
                dy = dy + grad_out[:, t]
            y_prev, z_prev = ys[t], zs[t]
            step = work[t]
            s_bar, s, cand_z, cand_y = (step[:, k * n : (k + 1) * n] for k in range(4))
            # y_t = y + dt s̄ (c_y − y)
            to_gate = dy * (cand_y - y_prev)
            to_cand = dy * s_bar
            dy_next = torch.addcmul(dy, dy, s_bar, value=-dt)
            sigmoid_backward(to_gate, s_bar, out=s_bar)  # g of Δ̄'s pre-activation
            tanh_backward(to_cand, cand_y, out=cand_y)  # g of c_y's pre-activation
            dz = torch.addmm(dz, cand_y, wy, alpha=dt)
            # z_t = z + dt s (c_z − z)
            to_gate = dz * (cand_z - z_prev)
            to_cand = dz * s
            dz = torch.addcmul(dz, dz, s, value=-dt)
            sigmoid_backward(to_gate, s, out=s)
            tanh_backward(to_cand, cand_z, out=cand_z)
            dy = torch.addmm(dy_next, step[:, : 3 * n], w3, alpha=dt)
        grad = work.view(steps * batch, 4 * n).mul_(dt)  # dL/d(pre-activation), time-major
        grad_x, grad_v, grad_b = input_map_grads(ctx, grad, v, x_rows)
        grad_w3 = grad[:, : 3 * n].T @ ys[:-1].reshape(steps * batch, n)
        grad_wy = grad[:, 3 * n :].T @ zs[1:].reshape(steps * batch, n)
        grad_b3 = grad_by = None
        if ctx.has_b3:
            grad_b3, grad_by = grad_b[: 3 * n].clone(), grad_b[3 * n :].clone()
        return grad_x, grad_v, grad_b, grad_w3, grad_b3, grad_wy, grad_by, dy, None, None


class LEMEncoder(LoopEncoder):
    def __init__(self, input_size: int, hidden: int, *, dt: float = 0.21, two_biases: bool = False):
        super().__init__()
        self.hidden = hidden
        self.dt = dt
        self.two_biases = two_biases
        # Rows of `input` and `recurrent`: [Δ̄ (gate of y), Δ (gate of z), z's candidate];
        # `input` has a fourth block, y's candidate, whose recurrent part is `transform_z`.
        self.input = nn.Linear(input_size, 4 * hidden)
        self.recurrent = nn.Linear(hidden, 3 * hidden, bias=two_biases)
        self.transform_z = nn.Linear(hidden, hidden, bias=two_biases)
        bound = 1.0 / math.sqrt(hidden)
        for param in self.parameters():
            nn.init.uniform_(param, -bound, bound)

    def _scan(self, x: torch.Tensor, h0: torch.Tensor | None, keep_states: bool) -> torch.Tensor:
        if h0 is None:
            h0 = x.new_zeros(x.shape[0], self.hidden)
        return LEMScan.apply(
            x,
            self.input.weight,
            self.input.bias,
            self.recurrent.weight,
            self.recurrent.bias,
            self.transform_z.weight,
            self.transform_z.bias,
            h0,
            self.dt,
            keep_states,
        )


def lem(*, input_size, output_size, hidden, options: LEMOptions):
    encoder = LEMEncoder(input_size, hidden, **options.model_dump())
    model = SequenceClassifier(encoder, hidden, output_size)
    nn.init.kaiming_normal_(model.head.weight)
    return model
