"""UnICORNN, the undamped independent controlled oscillator RNN (Rusch & Mishra, ICML 2021).

L stacked layers; each a linear map over all steps, then a diagonal undamped oscillator
integrated by symplectic Euler, z first and y with the new z (docs/models.md):

    x̃_t = V u_t + b,   δ = dt · sigmoid(c)
    z_t = z_{t-1} − δ ⊙ (tanh(w ⊙ y_{t-1} + x̃_t) + α y_{t-1})
    y_t = y_{t-1} + δ ⊙ z_t                 the next layer reads y; readout on y_T of the last

w, c ∈ ℝⁿ per layer. Between layers, in training, dropout with one mask per (sequence,
unit) shared over every step, applied to a layer's output sequence before the next
layer's linear map (the official code also applies it to the last layer's output before
the classifier; here the last layer's output is not dropped). Init: V Kaiming-uniform
(a = 8, fan_in), biases 0 (the classifier's too, as in the official code), w ~ U(0, 1),
c ~ U(−0.1, 0.1), classifier weight Kaiming-normal.

The whole stack is one autograd Function (`UnICORNNScan`). The recurrence is elementwise,
so on a CPU its cost is the number of small operations per step, not arithmetic: the
layers run as a wavefront over chunks of time (layer l on chunk j − l in round j), and each
step is one set of operations on every layer in flight. The forward runs without a graph
and keeps tanh_t in the input map's buffer and (y, z) at each round's start; the backward
runs the rounds in reverse, recomputing each round's states from them with the forward's
own operations (so bit for bit: it does not invert the step as the official CUDA kernel
does, and its gradients are exact to rounding for any T), carrying only (dy, dz) and
accumulating the gradients of w, b and c per (layer, sequence, unit), summed once at the
end; the input maps and their gradients are one GEMM per layer and chunk. The buffers stay
with the encoder from batch to batch (arnn.kernels.workspace). `h0`, where given, is the
last layer's y_0 (z_0 = 0; the layers below start at 0).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from arnn.kernels.eager import (
    tanh_backward,
)
from arnn.kernels.workspace import ScanBuffers, Workspace, records_graph
from arnn.models._layers import SequenceClassifier
from arnn.models.catalog import UnICORNNOptions


class _Wavefront:
    """Which layer integrates which chunk of time in which round: in round j, layer l
    integrates chunk j − l; the layers in flight in a round are a run lo..hi, and of them
    only the lowest (on the last chunk) may have fewer than `chunk` steps."""

    def __init__(self, steps: int, layers: int, chunk: int):
        self.steps, self.layers, self.chunk = steps, layers, chunk
        self.chunks = -(-steps // chunk)
        self.rounds = self.chunks + layers - 1 if self.chunks else 0

    def active(self, j: int) -> tuple[int, int]:
        return max(0, j - self.chunks + 1), min(self.layers - 1, j)

    def span(self, j: int, layer: int) -> tuple[int, int]:
        """(first step, number of steps) of layer's chunk in round j."""
        start = (j - layer) * self.chunk
        return start, min(self.chunk, self.steps - start)

    def segments(self, j: int) -> list[tuple[slice, range]]:
        """The steps of round j in order, as (layers that take them, step indices)."""
        lo, hi = self.active(j)
        short = self.span(j, lo)[1]
        runs = [(slice(lo, hi + 1), range(short))]
        if short < self.chunk and lo < hi:
            runs.append((slice(lo + 1, hi + 1), range(short, self.chunk)))
        return runs


class UnICORNNScan(torch.autograd.Function):
    """out = UnICORNNScan.apply(x_rows [T*B, m] (time-major rows), y0 [B, n], masks
    [L-1, B, n] | None, dt, alpha, steps, keep, buffers | None,
    v_1, b_1, w_1, c_1, ..., v_L, b_L, w_L, c_L)

    Every layer of the stack in one Function. `out` is the last layer's every y,
    time-major [T, B, n], when `keep`, else its y_T [B, n]; `y0` is the last layer's y_0
    (the layers below start at 0), `masks[l]` the dropout mask on layer l's output, the
    same at every step; None when off. `buffers` (arnn.kernels.workspace.ScanBuffers) holds
    what the backward reads, from the encoder's workspace, so that the next batch finds
    them mapped; its workspace also lends the scratch buffers; None: all fresh.

    Time is cut into chunks and the layers run as a wavefront (`_Wavefront`): each step is
    one set of elementwise operations on all the layers in flight, not one set per layer,
    and before each round every layer's input map over its chunk is one GEMM from the
    chunk the layer below finished in the round before. The forward keeps tanh_t (in the
    input map's buffer) and (y, z) at each round's start; the backward runs the rounds in
    reverse, recomputes a round's states from its saved (y, z) with the forward's own
    operations (so bit for bit: it does not invert the step as the official CUDA kernel
    does, and its gradients are exact to rounding for any T), and hands each layer the
    gradient on its outputs, one GEMM per chunk from the layer above in the round before.
    The backward overwrites the saved activations and runs once, unless
    `retain_activations` is set (it then works on a copy, so that
    torch.autograd.gradcheck can call it many times).
    """

    retain_activations = False
    chunk = 32  # steps per round, and so between the saved (y, z)

    @staticmethod
    def forward(
        ctx,
        x_rows,
        y0,
        masks,
        dt: float,
        alpha: float,
        steps: int,
        keep: bool,
        buffers,
        *params,
    ):
        plan = _Wavefront(steps, len(params) // 4, UnICORNNScan.chunk)
        if buffers is None:
            buffers = ScanBuffers(None, True, "UnICORNNScan")
        space = buffers.workspace  # the scratch buffers go back to it directly
        layers, chunk = plan.layers, plan.chunk
        batch, n = y0.shape
        v, b, w, c = params[0::4], params[1::4], params[2::4], params[3::4]
        delta = torch.sigmoid(torch.stack(c)).mul_(dt)[:, None, :]  # [L, 1, n]
        w_all = torch.stack(w)[:, None, :]
        # work[j, l]: layer l's x̃ over its chunk in round j, then tanh in place.
        work = buffers.take("work", (plan.rounds, layers, chunk, batch, n), y0)
        # out[l, i]: layer l's y after the i-th step of its chunk; out[l, -1] carries the
        # last one into the next chunk, and so starts as y_0.
        out = space.take("out", (layers, chunk, batch, n), y0).zero_()
        out[-1, -1].copy_(y0)
        z, p = y0.new_zeros(layers, batch, n), y0.new_empty(layers, batch, n)
        marks = buffers.take("marks", (2, plan.rounds, layers, batch, n), y0)
        mark_y, mark_z = marks.unbind(0)
        seq = y0.new_empty(steps, batch, n) if keep else None
        below = space.take("below", (chunk, batch, n), y0)
        for j in range(plan.rounds):
            lo, hi = plan.active(j)
            for layer in range(lo, hi + 1):
                start, size = plan.span(j, layer)
                if layer == 0:
                    rows = x_rows[start * batch : (start + size) * batch]
                else:
                    rows = out[layer - 1, :size]
                    if masks is not None:
                        rows = torch.mul(rows, masks[layer - 1], out=below[:size])
                    rows = rows.view(size * batch, n)
                target = work[j, layer, :size].view(size * batch, n)
                torch.addmm(b[layer], rows, v[layer].T, out=target)
            mark_y[j].copy_(out[:, -1])
            mark_z[j].copy_(z)
            for s, indices in plan.segments(j):
                ths, ys, w_s, z_s, delta_s = (
                    work[j, s].unbind(1),
                    out[s].unbind(1),
                    w_all[s],
                    z[s],
                    delta[s],
                )
                p_s = p[s]
                for i in indices:
                    th = ths[i].addcmul_(w_s, ys[i - 1]).tanh_()
                    _step(th, ys[i - 1], z_s, delta_s, alpha, p_s, z_s, ys[i])
            if keep and hi == layers - 1:
                start, size = plan.span(j, hi)
                seq[start : start + size].copy_(out[hi, :size])
        space.give("out", out)
        space.give("below", below)
        buffers.end_forward()
        ctx.save_for_backward(x_rows, *params)
        ctx.buffers, ctx.masks = buffers, masks
        ctx.plan, ctx.dt, ctx.alpha, ctx.keep = plan, dt, alpha, keep
        if keep:
            return seq
        if steps == 0:
            return y0.clone()
        return out[-1, plan.span(plan.rounds - 1, layers - 1)[1] - 1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x_rows, *params = ctx.saved_tensors
        taken = ctx.buffers.for_backward()
        work, marks, masks, plan = taken["work"], taken["marks"], ctx.masks, ctx.plan
        space = ctx.buffers.workspace
        if UnICORNNScan.retain_activations:
            work = work.clone()
        mark_y, mark_z = marks.unbind(0)
        layers, chunk, alpha = plan.layers, plan.chunk, ctx.alpha
        batch, n = mark_y.shape[-2:]
        v, w, c = params[0::4], params[2::4], params[3::4]
        sig = torch.sigmoid(torch.stack(c))  # [L, n]
        delta = (sig * ctx.dt)[:, None, :]
        delta_alpha, delta_w = delta * alpha, delta * torch.stack(w)[:, None, :]
        scale = -delta[:, 0, :]  # dL/d(w y + x̃) = −δ g, a factor applied once at the end
        v_scaled = [v[layer] * scale[layer, :, None] for layer in range(layers)]
        dy, dz = mark_y.new_zeros(2, layers, batch, n).unbind(0)
        if not ctx.keep:
            dy[-1].copy_(grad_out)
        # Per (layer, sequence, unit): Σ dy_t z_t, Σ dz_t p_t, Σ g_t, Σ g_t y_{t-1}, where
        # p_t = tanh_t + α y_{t-1} and g_t = dz_t (1 − tanh_t²).
        acc_dy_z, acc_dz_p, acc_g, acc_g_y = torch.zeros_like(dy).expand(4, -1, -1, -1).clone()
        # A round's states, recomputed: ys[l, i] = y_{t0+i}, zs[l, i] = z_{t0+i},
        # ps[l, i] = p_{t0+i+1}; from_above[l, i] = dL/dy_{t0+i+1} through layer l + 1.
        states = space.take("states", (2, layers, chunk + 1, batch, n), dy)
        per_step = space.take("per_step", (2, layers, chunk, batch, n), dy).zero_()
        below = space.take("below", (chunk, batch, n), dy)
        ys, zs = states.unbind(0)
        ps, from_above = per_step.unbind(0)
        grad_v = [torch.zeros_like(weight) for weight in v]
        grad_x = torch.empty_like(x_rows) if ctx.needs_input_grad[0] else None
        for j in range(plan.rounds - 1, -1, -1):
            lo, hi = plan.active(j)
            if ctx.keep and hi == layers - 1:
                start, size = plan.span(j, hi)
                from_above[hi, :size].copy_(grad_out[start : start + size])
            ys[:, 0].copy_(mark_y[j])
            zs[:, 0].copy_(mark_z[j])
            segments = plan.segments(j)
            for s, indices in segments:
                ths, delta_s = work[j, s].unbind(1), delta[s]
                y_s, z_s, p_s = ys[s].unbind(1), zs[s].unbind(1), ps[s].unbind(1)
                for i in indices:
                    _step(ths[i], y_s[i], z_s[i], delta_s, alpha, p_s[i], z_s[i + 1], y_s[i + 1])
            for s, indices in reversed(segments):
                ths, y_s, z_s, p_s = (
                    work[j, s].unbind(1),
                    ys[s].unbind(1),
                    zs[s].unbind(1),
                    ps[s].unbind(1),
                )
                grads_in, dy_s, dz_s = from_above[s].unbind(1), dy[s], dz[s]
                delta_s, delta_alpha_s, delta_w_s = delta[s], delta_alpha[s], delta_w[s]
                acc = acc_dy_z[s], acc_dz_p[s], acc_g[s], acc_g_y[s]
                for i in reversed(indices):
                    dy_s.add_(grads_in[i])
                    dz_s.addcmul_(delta_s, dy_s)  # now dL/dz_t through y_t = y + δ z_t too
                    acc[0].addcmul_(dy_s, z_s[i + 1])
                    acc[1].addcmul_(dz_s, p_s[i])
                    g = tanh_backward(dz_s, ths[i], out=ths[i])
                    acc[2].add_(g)
                    acc[3].addcmul_(g, y_s[i])
                    dy_s.addcmul_(delta_alpha_s, dz_s, value=-1.0)
                    dy_s.addcmul_(delta_w_s, g, value=-1.0)
            for layer in range(lo, hi + 1):
                start, size = plan.span(j, layer)
                g_rows = work[j, layer, :size].view(size * batch, n)
                if layer == 0:
                    rows = slice(start * batch, (start + size) * batch)
                    grad_v[0].addmm_(g_rows.T, x_rows[rows])
                    if grad_x is not None:
                        torch.mm(g_rows, v_scaled[0], out=grad_x[rows])
                    continue
                # The layer below reaches this chunk in the next round.
                target = from_above[layer - 1, :size]
                torch.mm(g_rows, v_scaled[layer], out=target.view(size * batch, n))
                if masks is not None:
                    target.mul_(masks[layer - 1])
            # The layer above took this chunk in the round before: its input map's weight
            # gradient needs these outputs, recomputed only now.
            for layer in range(lo, min(hi, layers - 2) + 1):
                start, size = plan.span(j, layer)
                g_above = work[j + 1, layer + 1, :size].view(size * batch, n)
                rows = ys[layer, 1 : size + 1]
                if masks is not None:
                    rows = torch.mul(rows, masks[layer], out=below[:size])
                grad_v[layer + 1].addmm_(g_above.T, rows.reshape(size * batch, n))
        grads = []
        for layer in range(layers):
            grad_delta = acc_dy_z[layer].sum(0) - acc_dz_p[layer].sum(0)
            grads += [
                grad_v[layer].mul_(scale[layer, :, None]),
                acc_g[layer].sum(0).mul_(scale[layer]),
                acc_g_y[layer].sum(0).mul_(scale[layer]),
                grad_delta * ctx.dt * sig[layer] * (1 - sig[layer]),
            ]
        for name, buffer in (("states", states), ("per_step", per_step), ("below", below)):
            space.give(name, buffer)
        if not UnICORNNScan.retain_activations:
            ctx.buffers.release()
        grad_y0 = dy[-1].clone() if ctx.needs_input_grad[1] else None
        return (grad_x, grad_y0, None, None, None, None, None, None, *grads)


def _step(th, y, z, delta, alpha: float, p, z_out, y_out):
    """One symplectic Euler step from tanh_t = tanh(w y + x̃_t): p_t = tanh_t + α y_{t-1}
    into `p`, z_t = z_{t-1} − δ p_t into `z_out`, y_t = y_{t-1} + δ z_t into `y_out`. The
    forward and the backward's recomputation share it, so the two agree bit for bit."""
    torch.add(th, y, alpha=alpha, out=p)
    torch.addcmul(z, delta, p, value=-1.0, out=z_out)
    torch.addcmul(y, delta, z_out, out=y_out)


class UnICORNNLayer(nn.Module):
    """One layer's parameters: the input map V, b and the oscillators' w, c. The encoder
    integrates every layer at once (UnICORNNScan)."""

    def __init__(self, input_size: int, hidden: int, *, dt: float, alpha: float):
        super().__init__()
        self.hidden = hidden
        self.dt = dt
        self.alpha = alpha
        self.input = nn.Linear(input_size, hidden)
        self.w = nn.Parameter(torch.empty(hidden))
        self.c = nn.Parameter(torch.empty(hidden))
        nn.init.kaiming_uniform_(self.input.weight, a=8, mode="fan_in")
        nn.init.zeros_(self.input.bias)
        nn.init.uniform_(self.w, 0.0, 1.0)
        nn.init.uniform_(self.c, -0.1, 0.1)

    def scan_parameters(self) -> tuple[torch.Tensor, ...]:
        return self.input.weight, self.input.bias, self.w, self.c


class UnICORNNEncoder(nn.Module):
    def __init__(
        self,
        input_size: int,
        hidden: int,
        *,
        dt: float = 0.19,
        alpha: float = 30.65,
        layers: int = 3,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.hidden = hidden
        self.dt = dt
        self.alpha = alpha
        self.dropout = dropout
        self.workspace = Workspace()  # the scan's buffers, kept from batch to batch
        sizes = [input_size] + [hidden] * (layers - 1)
        self.layers = nn.ModuleList(
            UnICORNNLayer(size, hidden, dt=dt, alpha=alpha) for size in sizes
        )

    def dropout_mask(self, like: torch.Tensor) -> torch.Tensor | None:
        """One mask [B, n] per (sequence, unit), scaled by 1/(1 − p); None when off."""
        if not self.training or self.dropout == 0:
            return None
        keep = 1.0 - self.dropout
        return like.new_empty(like.shape[0], self.hidden).bernoulli_(keep).div_(keep)

    def _run(self, x: torch.Tensor, h0: torch.Tensor | None, keep: bool) -> torch.Tensor:
        """x [B, T, m] -> the last layer's every y, time-major [T, B, n], or its y_T."""
        batch, steps = x.shape[0], x.shape[1]
        # Each layer's output carries the next layer's dropout mask.
        masks = [self.dropout_mask(x) for _ in self.layers[1:]]
        masks = torch.stack(masks) if masks and masks[0] is not None else None
        if h0 is None:
            h0 = x.new_zeros(batch, self.hidden)
        x_rows = x.transpose(0, 1).reshape(steps * batch, x.shape[2])
        params = [p for layer in self.layers for p in layer.scan_parameters()]
        buffers = ScanBuffers(self.workspace, records_graph(x, h0, *params), "UnICORNNScan")
        return UnICORNNScan.apply(
            x_rows, h0, masks, self.dt, self.alpha, steps, keep, buffers, *params
        )

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
        return self._run(x, h0, keep=False)

    def states(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
        return self._run(x, h0, keep=True).transpose(0, 1)


def unicornn(*, input_size, output_size, hidden, options: UnICORNNOptions):
    encoder = UnICORNNEncoder(input_size, hidden, **options.model_dump())
    model = SequenceClassifier(encoder, hidden, output_size)
    nn.init.kaiming_normal_(model.head.weight)
    nn.init.zeros_(model.head.bias)  # the official init zeroes every bias, the classifier's too
    return model
