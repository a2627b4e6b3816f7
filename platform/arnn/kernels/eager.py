"""The antisymmetric recurrence as one autograd Function with a hand-written backward.

The autograd loop records four graph nodes per step. Here the forward runs without a
graph and keeps only what the backward needs, and the reverse-time loop does, per step,
one product for the sequential part and one in-place accumulation for the gradient of A:

    pre_t = h_{t-1} A^T + u_t                       (u_t: the input projection V x_t + b)
    h_t   = h_{t-1} + eps * [z_t *] tanh(pre_t)
    g_t   = dL/dpre_t,  dh_{t-1} = dh_t + g_t A,  dA += g_t^T h_{t-1},  du_t = g_t

Per-step tensors are kept as small separate tensors rather than slices of [T, B, H]
buffers: on the CPU every fresh 50 MB buffer costs ~20 ms of page faults, while the
allocator recycles small blocks. The same Function serves any square A: the
antisymmetric cells and the unstructured ablation alike.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable


class RecurrenceScan(torch.autograd.Function):
    """out = RecurrenceScan.apply(u [B,T,kH], a_t = A^T [H,H], h0 [B,H], eps, gated, keep)

    `out` is every state [B, T, H] when `keep`, else h_T [B, H]. Gated: u = [u_h | u_z].
    """

    @staticmethod
    def forward(ctx, u, a_t, h0, eps: float, gated: bool, keep: bool):
        hidden = a_t.shape[0]
        states, candidates, gates = [h0], [], []
        h = h0
        for u_t in u.unbind(1):
            if gated:
                ah = h @ a_t
                candidate = torch.tanh(ah + u_t[:, :hidden])
                gate = torch.sigmoid(ah + u_t[:, hidden:])
                gates.append(gate)
                h = torch.addcmul(h, gate, candidate, value=eps)
            else:
                candidate = torch.tanh(torch.addmm(u_t, h, a_t))
                h = torch.add(h, candidate, alpha=eps)
            candidates.append(candidate)
            states.append(h)
        ctx.save_for_backward(a_t)
        ctx.states, ctx.candidates, ctx.gates = states, candidates, gates
        ctx.eps, ctx.gated, ctx.keep = eps, gated, keep
        return torch.stack(states[1:], dim=1) if keep else h

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        (a_t,) = ctx.saved_tensors
        states, candidates, gates = ctx.states, ctx.candidates, ctx.gates
        eps, gated = ctx.eps, ctx.gated
        a = a_t.T
        hidden, steps = a.shape[0], len(candidates)
        # time-major storage, as the encoder lays out u: every step writes one block
        width = hidden * (2 if gated else 1)
        grad_u = grad_out.new_empty(steps, grad_out.shape[0], width).transpose(0, 1)
        grad_a_t = torch.zeros_like(a_t)
        dh = torch.zeros_like(states[0]) if ctx.keep else grad_out
        # g_t is computed without its factor eps, which the products take as alpha and
        # grad_u receives in one multiplication at the end.
        for t in range(steps - 1, -1, -1):
            if ctx.keep:
                dh = dh + grad_out[:, t]
            if gated:
                dcandidate = _tanh_backward(dh * gates[t], candidates[t], grad_u[:, t, :hidden])
                dgate = _sigmoid_backward(dh * candidates[t], gates[t], grad_u[:, t, hidden:])
                g = dcandidate + dgate
            else:
                g = _tanh_backward(dh, candidates[t], grad_u[:, t])
            grad_a_t.addmm_(states[t].T, g, alpha=eps)
            dh = torch.addmm(dh, g, a, alpha=eps)
        grad_u.mul_(eps)
        return grad_u, grad_a_t, dh, None, None, None


def _tanh_backward(grad, output, out):
    """grad * (1 - output^2), written into `out`."""
    return torch.ops.aten.tanh_backward.grad_input(grad, output, grad_input=out)


def _sigmoid_backward(grad, output, out):
    """grad * output * (1 - output), written into `out`."""
    return torch.ops.aten.sigmoid_backward.grad_input(grad, output, grad_input=out)
