"""The antisymmetric recurrence on the PyTorch path: one autograd Function with a
hand-written backward, for the CPU (and any device).

The autograd loop records four graph nodes per step. Here the forward runs without a
graph and the reverse-time loop carries only the sequential part, dh:

    u     = x V^T + b                             (all steps, one matmul, before the loop)
    pre_t = h_{t-1} A^T + u_t
    h_t   = h_{t-1} + eps * [z_t *] tanh(pre_t)
    g_t   = dL/dpre_t,  dh_{t-1} = dh_t + g_t A,  dA += g_t^T h_{t-1}
    dV    = sum_t g_t^T x_t,  db = sum_t g_t     (one matmul and one sum, after the loop)

Memory is the cost on a CPU: every fresh 50 MB buffer costs ~20 ms of page faults. So one
time-major buffer [T, B, kH] serves three purposes in turn: it is computed as u, each
step overwrites its slice with the activations (tanh, and the gate's sigmoid), and the
backward overwrites those with g_t. The per-step states are small separate tensors, which
the allocator recycles. The same Function serves any square A: the antisymmetric cells
and the unstructured ablation alike.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable


def refuse_second_backward(saved, name: str) -> None:
    """The hand-written backwards overwrite their saved activations as they go, so each
    runs once: `saved` is what the first one set to None."""
    if saved is None:
        raise RuntimeError(
            f"{name}'s backward overwrites its saved activations and runs once; "
            "do not backward through it twice (retain_graph)"
        )


class RecurrenceScan(torch.autograd.Function):
    """out = RecurrenceScan.apply(x [B,T,m], weight [kH,m], bias [kH], a_t = A^T [H,H],
    h0 [B,H], eps, gated, keep)

    weight and bias are the input projection (rows [0, H) for the candidate, [H, 2H) for
    the gate when gated). `out` is every state [B, T, H] when `keep`, else h_T [B, H].
    """

    @staticmethod
    def forward(ctx, x, weight, bias, a_t, h0, eps: float, gated: bool, keep: bool):
        batch, steps, inputs = x.shape
        hidden = a_t.shape[0]
        x_rows = x.transpose(0, 1).reshape(steps * batch, inputs)
        work = torch.addmm(bias, x_rows, weight.T).view(steps, batch, -1)
        h = h0
        states = [h0]
        for t in range(steps):
            if gated:
                candidate, gate = work[t, :, :hidden], work[t, :, hidden:]
                ah = h @ a_t  # shared between the gate and the candidate
                candidate.add_(ah).tanh_()
                gate.add_(ah).sigmoid_()
                h = torch.addcmul(h, gate, candidate, value=eps)
            else:
                step = work[t]
                step.addmm_(h, a_t).tanh_()
                h = torch.add(h, step, alpha=eps)
            states.append(h)
        ctx.save_for_backward(a_t, weight, x_rows)
        ctx.work, ctx.states = work, states
        ctx.eps, ctx.gated, ctx.keep, ctx.input_shape = eps, gated, keep, x.shape
        return torch.stack(states[1:], dim=1) if keep else h

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        refuse_second_backward(ctx.work, "RecurrenceScan")
        a_t, weight, x_rows = ctx.saved_tensors
        work, states, eps, gated = ctx.work, ctx.states, ctx.eps, ctx.gated
        ctx.work = ctx.states = None
        a = a_t.T
        hidden, steps = a.shape[0], work.shape[0]
        grad_a_t = torch.zeros_like(a_t)
        dh = torch.zeros_like(states[0]) if ctx.keep else grad_out
        # g_t is computed without its factor eps, which the products take as alpha and
        # the input projection's gradients receive in one multiplication at the end.
        for t in range(steps - 1, -1, -1):
            if ctx.keep:
                dh = dh + grad_out[:, t]
            if gated:
                candidate, gate = work[t, :, :hidden], work[t, :, hidden:]
                to_candidate, to_gate = dh * gate, dh * candidate
                tanh_backward(to_candidate, candidate, out=candidate)
                sigmoid_backward(to_gate, gate, out=gate)
                g = candidate + gate
            else:
                g = tanh_backward(dh, work[t], out=work[t])
            grad_a_t.addmm_(states[t].T, g, alpha=eps)
            dh = torch.addmm(dh, g, a, alpha=eps)
        grad_pre = work.view(steps * work.shape[1], -1).mul_(eps)  # now dL/du, time-major
        grad_x, grad_weight, grad_bias = input_map_grads(ctx, grad_pre, weight, x_rows)
        return grad_x, grad_weight, grad_bias, grad_a_t, dh, None, None, None


def tanh_backward(grad, output, out):
    """grad * (1 - output^2), written into `out` (which may be `output` itself)."""
    return torch.ops.aten.tanh_backward.grad_input(grad, output, grad_input=out)


def sigmoid_backward(grad, output, out):
    """grad * output * (1 - output), written into `out` (which may be `output` itself)."""
    return torch.ops.aten.sigmoid_backward.grad_input(grad, output, grad_input=out)


def input_map_grads(ctx, grad_rows, weight, x_rows):
    """The gradients of the input map u = x weight^T + bias, taken for all steps at once
    from dL/du as time-major rows [T*B, k]: (dL/dx [B, T, m], None where x needs none;
    dL/dweight; dL/dbias). `ctx.input_shape` is x's shape."""
    grad_x = None
    if ctx.needs_input_grad[0]:
        batch, steps, inputs = ctx.input_shape
        grad_x = (grad_rows @ weight).view(steps, batch, inputs).transpose(0, 1)
    return grad_x, grad_rows.T @ x_rows, grad_rows.sum(0)
