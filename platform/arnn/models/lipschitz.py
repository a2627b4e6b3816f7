"""Lipschitz RNN (Erichson, Azencot, Queiruga, Hodgkinson, Mahoney, ICLR 2021), as its
official code computes it (erichson/LipschitzRNN, models.py). σ = tanh, h_0 = 0:

    A = β(B - Bᵀ) + (1 - β)(B + Bᵀ) - γI,   W = β(C - Cᵀ) + (1 - β)(C + Cᵀ) - γI
    f(h, u) = A h + σ(W h + E u + b)
    euler:     h_t = h_{t-1} + ε f(h_{t-1}, u_t)
    midpoint:  h_t = h_{t-1} + ε f(h_{t-1} + (ε/2) f(h_{t-1}, u_t), u_t)   (u_t held)

and the classifier reads h_T. Learned: B, C [n, n] and E [n, m] with its bias b; β, γ, ε
are fixed (one γ for both matrices, as the code). Initialisation as the code:
B, C ~ N(0, (init_std / n)²), standard deviation init_std / n (not / √n), so with the
default init_std 0.1, A ≈ W ≈ -γI at the start; E and the readout take torch's default
Linear initialisation (U(-1/√fan_in, 1/√fan_in)). Parameters: 2n² + (m + 11)n + 10.

The official code multiplies row vectors, h @ A, which is Aᵀ h; since Aᵀ is A built from
Bᵀ, that is the same model with B and C transposed (and the same distribution at init).
This module computes A h as written above: to load the official B and C, transpose them.

The recurrence runs as one autograd Function (LipschitzScan) in the manner of
arnn.kernels.eager: the input projection of every step as one matmul before the loop,
both n x n products of a stage as one [B, n] x [n, 2n] product, the forward without a
graph over the steps, and a hand-written backward that carries only dh back in time.
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
from arnn.models.catalog import LipschitzOptions


class LipschitzScan(torch.autograd.Function):
    """out = LipschitzScan.apply(x [B,T,m], e [n,m], bias [n], m1 [n,2n], m2 [n,2n] | None,
    h0 [B,n], eps, keep, retain=False)

    Row convention, Ŵ = Wᵀ, Â = Aᵀ, u = x Eᵀ + b (one matmul before the loop).

    euler (m2 None), m1 = [Ŵ | L1], L1 = I + εÂ:
        a_t = tanh(h Ŵ + u_t),   h_t = h L1 + ε a_t              ([h Ŵ | h L1] = h m1)
    backward: g = ε dh ⊙ (1 - a²);  dh_{t-1} = [g | dh] m1ᵀ;  dm1 += h_{t-1}ᵀ [g | dh]

    midpoint, m1 = [Ŵ | L1], L1 = I + (ε/2)Â, m2 = [Ŵ | L2], L2 = εÂ:
        a1 = tanh(h Ŵ + u_t),  m = h L1 + (ε/2) a1
        a2 = tanh(m Ŵ + u_t),  h_t = h + m L2 + ε a2
    backward: g2 = ε d ⊙ (1 - a2²),  dm = [g2 | d] m2ᵀ,  g1 = (ε/2) dm ⊙ (1 - a1²),
        dh_{t-1} = d + [g1 | dm] m1ᵀ,  dm1 += hᵀ [g1 | dm],  dm2 += mᵀ [g2 | d],
        du_t = g1 + g2

    The products with m1ᵀ, m2ᵀ accumulate per step; the input projection's gradients are one
    matmul each after the reverse loop.

    `out` is every h_t [B, T, n] when `keep`, else h_T [B, n]. The backward overwrites the
    saved activations and so runs once, unless `retain` (then it works on a copy: for
    gradcheck, which calls it many times).
    """

    @staticmethod
    def forward(ctx, x, e, bias, m1, m2, h0, eps: float, keep: bool, retain: bool = False):
        batch, steps, inputs = x.shape
        hidden = e.shape[0]
        x_rows = x.transpose(0, 1).reshape(steps * batch, inputs)
        work = torch.addmm(bias, x_rows, e.T).view(steps, batch, hidden)
        midpoint = m2 is not None
        h = h0
        states, mids = [h0], []
        first = work.new_empty(steps, batch, hidden) if midpoint else None
        q = h0.new_empty(batch, 2 * hidden)
        for t in range(steps):
            torch.mm(h, m1, out=q)
            if midpoint:
                a1 = torch.add(q[:, :hidden], work[t], out=first[t]).tanh_()
                mid = torch.add(q[:, hidden:], a1, alpha=eps / 2)
                mids.append(mid)
                torch.mm(mid, m2, out=q)
                a2 = work[t].add_(q[:, :hidden]).tanh_()
                h = torch.add(h, q[:, hidden:]).add_(a2, alpha=eps)
            else:
                a = work[t].add_(q[:, :hidden]).tanh_()
                h = torch.add(q[:, hidden:], a, alpha=eps)
            states.append(h)
        ctx.save_for_backward(e, x_rows, m1, m2)
        ctx.work, ctx.first, ctx.states, ctx.mids = work, first, states, mids
        ctx.eps, ctx.keep, ctx.retain, ctx.input_shape = eps, keep, retain, x.shape
        return torch.stack(states[1:], dim=1) if keep else h

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        refuse_second_backward(ctx.work, "LipschitzScan")
        e, x_rows, m1, m2 = ctx.saved_tensors
        work, first, states, mids = ctx.work, ctx.first, ctx.states, ctx.mids
        if ctx.retain:
            work = work.clone()
        else:
            ctx.work = ctx.first = ctx.states = ctx.mids = None
        eps, keep = ctx.eps, ctx.keep
        midpoint = m2 is not None
        hidden, steps = e.shape[0], work.shape[0]
        m1_t = m1.T
        m2_t = m2.T if midpoint else None
        grad_m1 = torch.zeros_like(m1)
        grad_m2 = torch.zeros_like(m2) if midpoint else None
        dh = torch.zeros_like(states[0]) if keep else grad_out
        batch = dh.shape[0]
        # [g | d] buffers for the products; reused each step.
        outer = dh.new_empty(batch, 2 * hidden)
        inner = dh.new_empty(batch, 2 * hidden) if midpoint else None
        for t in range(steps - 1, -1, -1):
            if keep:
                dh = dh + grad_out[:, t]
            g2 = tanh_backward(dh, work[t], out=outer[:, :hidden]).mul_(eps)
            outer[:, hidden:] = dh
            if midpoint:
                grad_m2.addmm_(mids[t].T, outer)
                dmid = outer @ m2_t
                g1 = tanh_backward(dmid, first[t], out=inner[:, :hidden]).mul_(eps / 2)
                inner[:, hidden:] = dmid
                grad_m1.addmm_(states[t].T, inner)
                torch.add(g1, g2, out=work[t])
                dh = torch.addmm(dh, inner, m1_t)
            else:
                grad_m1.addmm_(states[t].T, outer)
                work[t].copy_(g2)
                dh = outer @ m1_t
        grad_pre = work.view(steps * batch, hidden)  # dL/du, time-major
        grad_x, grad_e, grad_bias = input_map_grads(ctx, grad_pre, e, x_rows)
        return grad_x, grad_e, grad_bias, grad_m1, grad_m2, dh, None, None, None


def lipschitz_matrix(m: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """β(M - Mᵀ) + (1 - β)(M + Mᵀ) - γI."""
    eye = torch.eye(m.shape[0], dtype=m.dtype, device=m.device)
    return beta * (m - m.T) + (1 - beta) * (m + m.T) - gamma * eye


class LipschitzEncoder(nn.Module):
    """x [B, T, m] -> h_T [B, n] (`forward`) or every h_t [B, T, n] (`states`)."""

    def __init__(
        self,
        input_size: int,
        hidden: int,
        *,
        eps: float = 0.03,
        beta: float = 0.75,
        gamma: float = 0.001,
        init_std: float = 0.1,
        scheme: str = "euler",
    ):
        super().__init__()
        if scheme not in ("euler", "midpoint"):
            raise ValueError(f"scheme must be euler or midpoint, got {scheme!r}")
        self.hidden = hidden
        self.eps, self.beta, self.gamma, self.scheme = eps, beta, gamma, scheme
        self.retain_backward = False  # True lets backward run more than once (gradcheck)
        self.B = nn.Parameter(torch.empty(hidden, hidden))
        self.C = nn.Parameter(torch.empty(hidden, hidden))
        nn.init.normal_(self.B, 0.0, init_std / hidden)
        nn.init.normal_(self.C, 0.0, init_std / hidden)
        self.E = nn.Linear(input_size, hidden)  # torch's default init, as the code

    def recurrence_matrices(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, W), each β(M - Mᵀ) + (1 - β)(M + Mᵀ) - γI of B and C."""
        return (
            lipschitz_matrix(self.B, self.beta, self.gamma),
            lipschitz_matrix(self.C, self.beta, self.gamma),
        )

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
        return self._scan(x, h0, keep_states=False)

    def states(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
        return self._scan(x, h0, keep_states=True)

    def _scan(self, x, h0, keep_states: bool) -> torch.Tensor:
        if h0 is None:
            h0 = x.new_zeros(x.shape[0], self.hidden)
        a, w = self.recurrence_matrices()
        eye = torch.eye(self.hidden, dtype=a.dtype, device=a.device)
        if self.scheme == "euler":
            m1 = torch.cat((w.T, eye + self.eps * a.T), dim=1)
            m2 = None
        else:
            m1 = torch.cat((w.T, eye + (self.eps / 2) * a.T), dim=1)
            m2 = torch.cat((w.T, self.eps * a.T), dim=1)
        return LipschitzScan.apply(
            x, self.E.weight, self.E.bias, m1, m2, h0, self.eps, keep_states, self.retain_backward
        )


def lipschitz(*, input_size, output_size, hidden, options: LipschitzOptions):
    encoder = LipschitzEncoder(input_size, hidden, **options.model_dump())
    return SequenceClassifier(encoder, hidden, output_size)
