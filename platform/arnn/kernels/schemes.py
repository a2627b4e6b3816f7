"""Other integrators of the antisymmetric ODE, behind the eager scan's call plus a scheme:

    out = scheme_scan(x, input_layer, a_t, h0, eps, gated, keep, scheme)

The recurrence of arnn.kernels.eager is forward Euler of

    h' = f(h, x),   f(h, x) = tanh(A h + V x + b)                                (plain)
                    f(h, x) = sigmoid(A h + V_z x + b_z) * tanh(A h + V_h x + b_h) (gated)

with the input x_t held over each step of size eps. Here the same f is integrated by

    euler     h_t = h_{t-1} + eps f(h_{t-1}, x_t)                   (arnn.kernels.eager_scan)
    midpoint  h_t = h_{t-1} + eps f(h_{t-1} + eps/2 f(h_{t-1}, x_t), x_t)     (explicit RK2)
    rk4       k1 = f(h_{t-1}, x_t),          k2 = f(h_{t-1} + eps/2 k1, x_t),
              k3 = f(h_{t-1} + eps/2 k2, x_t), k4 = f(h_{t-1} + eps k3, x_t),
              h_t = h_{t-1} + eps/6 (k1 + 2 k2 + 2 k3 + k4)               (classical RK4)
    leapfrog  h_1 = h_0 + eps f(h_0, x_1)                      (one Euler step to start)
              h_t = h_{t-2} + 2 eps f(h_{t-1}, x_t)   for t = 2 .. T   (time-reversible)

Indexing: h_0 = h0, x_t = x[:, t-1] for t = 1 .. T; the output is h_T [B, H], or with
`keep` every state h_1 .. h_T as [B, T, H] (out[:, t-1] = h_t), as the eager scan's.

All schemes compute V x + b for every step as one matmul before the loop, run the loop
without an autograd graph, and have a hand-written backward that carries only the state
gradient back in time (two of them for leapfrog); the gradients of V, b and A^T are large
GEMMs after the loop. Like the eager scan's, a backward overwrites the saved activations
and runs once. They keep every stage's activations and states, several times the Euler
scan's one buffer: these come from the caller's `Workspace` where it gives one (the
encoder's, so that the next batch finds them mapped), and go back to it when the backward
is done with them, or at the end of a forward that records no graph.

`activation="identity"` replaces the candidate's tanh by the identity (f = A h + V x + b
when plain): the linear test problem on which the schemes' stability functions show.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from arnn.kernels.eager import input_map_grads, sigmoid_backward, tanh_backward
from arnn.kernels.workspace import ScanBuffers, records_graph

SCHEMES = ("euler", "midpoint", "rk4", "leapfrog")
ACTIVATIONS = ("tanh", "identity")

# Explicit Runge-Kutta methods whose stage i (i >= 1) depends on the previous stage only:
# s_0 = h, s_i = h + eps * coupling[i] * k_{i-1}, k_i = f(s_i), h' = h + eps * sum_i
# weights[i] * k_i. coupling[0] is unused.
_TABLEAUX = {
    "midpoint": ((0.0, 0.5), (0.0, 1.0)),
    "rk4": ((0.0, 0.5, 0.5, 1.0), (1 / 6, 1 / 3, 1 / 3, 1 / 6)),
}


def scheme_scan(
    x, input_layer, a_t, h0, eps, gated, keep, scheme, activation="tanh", workspace=None
):
    """The recurrence integrated by `scheme` (one of SCHEMES); the other arguments are the
    eager scan's: x [B, T, m], input_layer (Linear to H, or 2H when gated: rows [0, H) the
    candidate, [H, 2H) the gate), a_t = A^T [H, H], h0 [B, H], eps, gated, keep; the
    buffers from `workspace` (arnn.kernels.workspace.Workspace), or fresh where None."""
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    weight, bias = input_layer.weight, input_layer.bias
    buffers = ScanBuffers(workspace, records_graph(x, weight, bias, a_t, h0), "scheme_scan")
    if scheme == "euler":
        if activation == "tanh":
            from arnn.kernels import eager_scan

            return eager_scan(x, input_layer, a_t, h0, eps, gated, keep)
        coupling, weights = (0.0,), (1.0,)
        return RungeKuttaScan.apply(
            x, weight, bias, a_t, h0, eps, gated, keep, coupling, weights, activation, buffers
        )
    if scheme == "leapfrog":
        return LeapfrogScan.apply(x, weight, bias, a_t, h0, eps, gated, keep, activation, buffers)
    coupling, weights = _TABLEAUX[scheme]
    return RungeKuttaScan.apply(
        x, weight, bias, a_t, h0, eps, gated, keep, coupling, weights, activation, buffers
    )


def _input_projection(x, weight, bias, buffers):
    """u = x V^T + b for every step, time-major [T, B, kH], and x as rows [T*B, m]."""
    batch, steps, inputs = x.shape
    x_rows = x.transpose(0, 1).reshape(steps * batch, inputs)
    u = buffers.take("u", (steps, batch, weight.shape[0]), x)
    torch.addmm(bias, x_rows, weight.T, out=u.view(steps * batch, -1))
    return u, x_rows


def _activate_(pre, hidden, gated, activation):
    """pre [B, kH] in place: the candidate half through tanh (or not), the gate's through
    sigmoid."""
    if gated:
        if activation == "tanh":
            pre[:, :hidden].tanh_()
        pre[:, hidden:].sigmoid_()
    elif activation == "tanh":
        pre.tanh_()
    return pre


def _stage_backward_(dk, act, hidden, gated, activation):
    """dL/dpre of one evaluation of f, from dk = dL/df, written over the activations `act`
    [B, kH]. Gated, it leaves [g_h + g_z, g_z] there: the first half is what A receives,
    and the candidate's own g_h is recovered after the loop (see _input_gradients)."""
    if gated:
        candidate, gate = act[:, :hidden], act[:, hidden:]
        to_candidate, to_gate = dk * gate, dk * candidate
        if activation == "tanh":
            tanh_backward(to_candidate, candidate, out=candidate)
        else:
            candidate.copy_(to_candidate)
        sigmoid_backward(to_gate, gate, out=gate)
        candidate.add_(gate)
        return act
    if activation == "tanh":
        return tanh_backward(dk, act, out=act)
    return act.copy_(dk)


def _input_gradients(ctx, grad_u, x_rows, weight, hidden, gated):
    """The gradients of x, V and b from dL/du [T, B, kH], time-major, as it is gated:
    [g_h + g_z, g_z], fixed here to [g_h, g_z]."""
    if gated:
        grad_u[..., :hidden].sub_(grad_u[..., hidden:])
    return input_map_grads(ctx, grad_u.view(-1, grad_u.shape[-1]), weight, x_rows)


class RungeKuttaScan(torch.autograd.Function):
    """out = RungeKuttaScan.apply(x, weight, bias, a_t, h0, eps, gated, keep, coupling,
    weights, activation): an explicit Runge-Kutta scheme whose stage i > 0 evaluates f at
    h + eps * coupling[i] * k_{i-1} (midpoint, rk4, and Euler with one stage).

    Buffers, time-major: u [T, B, kH] (after the backward: dL/du); the activations of every
    stage [T, S, B, kH] (after the backward: dL/dpre); the stage states [T, S, B, H], whose
    stage 0 is h_{t-1}. Backward of step t, with dh = dL/dh_t, g_i = dL/dpre_i:
        dk_{S-1} = eps w_{S-1} dh,  dk_{i-1} = eps w_{i-1} dh + eps c_i g_i A
        dh_{t-1} = dh + (sum_i g_i) A,   dA^T += sum_i s_i^T g_i,   du_t = sum_i g_i
    """

    @staticmethod
    def forward(
        ctx, x, weight, bias, a_t, h0, eps, gated, keep, coupling, weights, activation, buffers
    ):
        u, x_rows = _input_projection(x, weight, bias, buffers)
        steps, batch, width = u.shape
        hidden = a_t.shape[0]
        stages = len(weights)
        acts = buffers.take("acts", (steps, stages, batch, width), u)
        states = buffers.take("states", (steps, stages, batch, hidden), u)
        states[0, 0] = h0
        last = None
        for t in range(steps):
            h = states[t, 0]
            u_t = u[t]
            for i in range(stages):
                act = _preactivation(u_t, states[t, i], a_t, hidden, gated, acts[t, i])
                _activate_(act, hidden, gated, activation)
                if i + 1 < stages:
                    _advance(h, act, eps * coupling[i + 1], hidden, gated, states[t, i + 1])
            states_next = states[t + 1, 0] if t + 1 < steps else h0.new_empty(h0.shape)
            first = True
            for i in range(stages):
                if weights[i] == 0.0:
                    continue
                base = h if first else states_next
                _advance(base, acts[t, i], eps * weights[i], hidden, gated, states_next)
                first = False
            last = states_next
        ctx.save_for_backward(a_t, weight, x_rows)
        ctx.buffers = buffers
        ctx.eps, ctx.gated, ctx.keep, ctx.input_shape = eps, gated, keep, x.shape
        ctx.coupling, ctx.weights, ctx.activation = coupling, weights, activation
        if keep:
            out = u.new_empty(batch, steps, hidden)
            out[:, :-1] = states[1:, 0].transpose(0, 1)
            out[:, -1] = last
        else:
            out = last
        buffers.end_forward()
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        a_t, weight, x_rows = ctx.saved_tensors
        taken = ctx.buffers.for_backward()
        u, acts, states = taken["u"], taken["acts"], taken["states"]
        eps, gated, coupling, weights = ctx.eps, ctx.gated, ctx.coupling, ctx.weights
        activation = ctx.activation
        steps, stages = acts.shape[0], acts.shape[1]
        hidden = a_t.shape[0]
        a = a_t.T.contiguous()
        dh = torch.zeros_like(states[0, 0]) if ctx.keep else grad_out
        for t in range(steps - 1, -1, -1):
            if ctx.keep:
                dh = dh + grad_out[:, t]
            grad_u = u[t]  # u_t is no longer needed: it gathers sum_i g_i
            dk = dh * (eps * weights[-1])
            for i in range(stages - 1, -1, -1):
                g = _stage_backward_(dk, acts[t, i], hidden, gated, activation)
                if i > 0:
                    dk = torch.addmm(
                        dh, g[:, :hidden], a, beta=eps * weights[i - 1], alpha=eps * coupling[i]
                    )
                if i == stages - 1:
                    grad_u.copy_(g)
                else:
                    grad_u.add_(g)
            dh = torch.addmm(dh, grad_u[:, :hidden], a)
        width = acts.shape[-1]
        grad_pre = acts.view(-1, width)[:, :hidden]
        grad_a_t = states.view(-1, hidden).T @ grad_pre
        grad_x, grad_weight, grad_bias = _input_gradients(ctx, u, x_rows, weight, hidden, gated)
        ctx.buffers.release()
        return (grad_x, grad_weight, grad_bias, grad_a_t, dh) + (None,) * 7


class LeapfrogScan(torch.autograd.Function):
    """out = LeapfrogScan.apply(x, weight, bias, a_t, h0, eps, gated, keep, activation):
    h_1 = h_0 + eps f(h_0, x_1), h_t = h_{t-2} + 2 eps f(h_{t-1}, x_t) for t >= 2.

    One buffer [T, B, kH] is u, then the activations, then dL/du; the states h_0 .. h_T
    are one buffer [T+1, B, H]. Backward, with D_t = dL/dh_t and g_t = dL/dpre_t (the
    evaluation of f at h_{t-1}): D_{t-1} += g_t A, D_{t-2} += D_t (t >= 2),
    D_0 += D_1 + g_1 A; dA^T = sum_t h_{t-1}^T g_t.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, a_t, h0, eps, gated, keep, activation, buffers):
        work, x_rows = _input_projection(x, weight, bias, buffers)
        steps, batch, _ = work.shape
        hidden = a_t.shape[0]
        states = buffers.take("states", (steps + 1, batch, hidden), work)
        states[0] = h0
        for t in range(steps):
            act = _preactivation(work[t], states[t], a_t, hidden, gated, work[t])
            _activate_(act, hidden, gated, activation)
            if t == 0:
                _advance(states[0], act, eps, hidden, gated, states[1])
            else:
                _advance(states[t - 1], act, 2 * eps, hidden, gated, states[t + 1])
        ctx.save_for_backward(a_t, weight, x_rows)
        ctx.buffers = buffers
        ctx.eps, ctx.gated, ctx.keep, ctx.input_shape = eps, gated, keep, x.shape
        ctx.activation = activation
        if keep:  # a copy, never a view of the buffer
            out = states[1:].transpose(0, 1).clone(memory_format=torch.contiguous_format)
        else:
            out = states[steps].clone()
        buffers.end_forward()
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        a_t, weight, x_rows = ctx.saved_tensors
        taken = ctx.buffers.for_backward()
        work, states = taken["u"], taken["states"]
        eps, gated, keep, activation = ctx.eps, ctx.gated, ctx.keep, ctx.activation
        steps = work.shape[0]
        hidden = a_t.shape[0]
        a = a_t.T.contiguous()
        # current = D_t, complete; behind = what D_{t-1} has gathered so far (from h_{t+1}).
        current = grad_out[:, -1] if keep else grad_out
        behind = torch.zeros_like(states[0])
        for t in range(steps, 0, -1):
            scale = 2 * eps if t > 1 else eps
            # g is computed without its factor `scale`: the product takes it as alpha, and
            # the buffer receives it after the loop.
            g = _stage_backward_(current, work[t - 1], hidden, gated, activation)
            earlier = torch.addmm(behind, g[:, :hidden], a, alpha=scale)
            if t == 1:
                earlier += current
            elif keep:
                earlier += grad_out[:, t - 2]
            behind, current = current, earlier
        work.mul_(2 * eps)
        work[0].mul_(0.5)
        grad_pre = work.view(-1, work.shape[-1])[:, :hidden]
        grad_a_t = states[:steps].view(-1, hidden).T @ grad_pre
        grad_x, grad_weight, grad_bias = _input_gradients(ctx, work, x_rows, weight, hidden, gated)
        ctx.buffers.release()
        return (grad_x, grad_weight, grad_bias, grad_a_t, current) + (None,) * 5


def _preactivation(u_t, h, a_t, hidden, gated, out):
    """out = u_t + h A^T [B, kH] (`out` may be `u_t` itself); gated, A h is computed once
    for both halves."""
    if not gated:
        return torch.addmm(u_t, h, a_t, out=out)
    ah = h @ a_t
    torch.add(u_t[:, :hidden], ah, out=out[:, :hidden])
    torch.add(u_t[:, hidden:], ah, out=out[:, hidden:])
    return out


def _advance(base, act, scale, hidden, gated, out):
    """out = base + scale * f, with f the activations `act` (gated: candidate * gate)."""
    if gated:
        return torch.addcmul(base, act[:, :hidden], act[:, hidden:], value=scale, out=out)
    return torch.add(base, act, alpha=scale, out=out)
