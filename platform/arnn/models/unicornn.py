"""UnICORNN, the undamped independent controlled oscillator RNN (Rusch & Mishra, ICML 2021).

L stacked layers; each a linear map over all steps, then a diagonal undamped oscillator
integrated by symplectic Euler, z first and y with the new z (docs/SUCCESSORS.md):

    x̃_t = V u_t + b,   δ = dt · sigmoid(c)
    z_t = z_{t-1} − δ ⊙ (tanh(w ⊙ y_{t-1} + x̃_t) + α y_{t-1})
    y_t = y_{t-1} + δ ⊙ z_t                 the next layer reads y; readout on y_T of the last

w, c ∈ ℝⁿ per layer. Between layers, in training, dropout with one mask per (sequence,
unit) shared over every step, applied to a layer's output sequence before the next
layer's linear map (the official code also applies it to the last layer's output before
the classifier; here the last layer's output is not dropped). Init: V Kaiming-uniform
(a = 8, fan_in), biases 0 (the classifier's too, as in the official code), w ~ U(0, 1),
c ~ U(−0.1, 0.1), classifier weight Kaiming-normal.

Each layer is one autograd Function (`UnICORNNScan`). The forward runs the elementwise
recurrence without a graph, keeps tanh_t in the input map's buffer and (y, z) only at every
`chunk`-th step; the backward walks back in time segment by segment, first recomputing the
segment's states from its saved (y, z) with the forward's own operations (so bit for bit:
it does not invert the step as the official CUDA kernel does, and its gradients are exact to
rounding for any T), carrying only (dy, dz) and accumulating the gradients of w, b and c per
(sequence, unit) in [B, n] accumulators that are summed once at the end; the input map's
gradients are single GEMMs after the reverse loop. The elementwise loops run on one thread.
`h0`, where given, is the last layer's y_0 (z_0 = 0; the layers below start at 0).
"""

from __future__ import annotations

import pydantic
import torch
from torch import nn
from torch.autograd.function import once_differentiable

from arnn.kernels.eager import (
    refuse_second_backward,
    tanh_backward,
)
from arnn.models._layers import SequenceClassifier
from arnn.models._registry import ModelOptions, register_model


class UnICORNNOptions(ModelOptions):
    dt: float = pydantic.Field(
        0.19, gt=0, description="time step; δ = dt·sigmoid(c) (psMNIST 0.19)"
    )
    alpha: float = pydantic.Field(
        30.65, ge=0, description="α, the linear restoring force α y (psMNIST 30.65)"
    )
    layers: int = pydantic.Field(3, ge=1, description="number of stacked oscillator layers")
    dropout: float = pydantic.Field(
        0.1,
        ge=0,
        lt=1,
        description="dropout between layers in training: one mask per (sequence, unit), "
        "shared over time",
    )


class UnICORNNScan(torch.autograd.Function):
    """out = UnICORNNScan.apply(u_rows [T*B, m] (time-major rows), v [n,m], b [n], w [n],
    c [n], y0 [B,n], mask [B,n] | None, dt, alpha, steps, keep)

    `out` is every y state, time-major [T, B, n], when `keep` (times `mask`, the dropout
    mask of the next layer's input, the same at every step, where one is given), else
    y_T [B, n]. The backward overwrites the saved activations and runs once, unless
    `retain_activations` is set (it then works on a copy, so that
    torch.autograd.gradcheck can call it many times).
    """

    retain_activations = False
    chunk = 32  # steps between the saved (y, z), from which the backward recomputes

    @staticmethod
    def forward(ctx, u_rows, v, b, w, c, y0, mask, dt: float, alpha: float, steps, keep):
        batch, n = y0.shape
        chunk = UnICORNNScan.chunk
        work = torch.addmm(b, u_rows, v.T).view(steps, batch, n)  # x̃, then tanh in place
        delta = torch.sigmoid(c).mul_(dt)
        seq = y0.new_empty(steps, batch, n) if keep else None
        # Of the states only (y, z) at every `chunk`-th step are kept: fresh memory costs
        # page faults, more than the backward's recomputation of the others, which runs
        # the same operations on the same values and so gives the same bits.
        marks = -(-steps // chunk)
        mark_y, mark_z = y0.new_empty(marks, batch, n), y0.new_empty(marks, batch, n)
        ys, zs, p = y0.new_empty(2, batch, n), y0.new_zeros(2, batch, n), torch.empty_like(y0)
        y, z = y0, zs[1]
        steps_work, steps_seq = work.unbind(0), (seq.unbind(0) if keep else None)
        y_bufs, z_bufs = ys.unbind(0), zs.unbind(0)
        for t in range(steps):
            if t % chunk == 0:
                mark_y[t // chunk].copy_(y)
                mark_z[t // chunk].copy_(z)
            th = steps_work[t].addcmul_(w, y).tanh_()
            z = _next_z(z, th, y, delta, alpha, p, out=z_bufs[t % 2])
            out = steps_seq[t] if keep and mask is None else y_bufs[t % 2]
            y = torch.addcmul(y, delta, z, out=out)
            if keep and mask is not None:
                torch.mul(y, mask, out=steps_seq[t])
        ctx.save_for_backward(u_rows, v, w, c)
        ctx.work, ctx.marks = work, (mark_y, mark_z)
        ctx.dt, ctx.alpha, ctx.mask, ctx.keep = dt, alpha, mask, keep
        if keep:
            return seq
        return y.clone() if steps == 0 else y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        refuse_second_backward(ctx.work, "UnICORNNScan")
        u_rows, v, w, c = ctx.saved_tensors
        work, (mark_y, mark_z), alpha, mask = ctx.work, ctx.marks, ctx.alpha, ctx.mask
        if UnICORNNScan.retain_activations:
            work = work.clone()
        else:
            ctx.work = ctx.marks = None
        steps, batch, n = work.shape
        chunk = UnICORNNScan.chunk
        sig = torch.sigmoid(c)
        delta = sig * ctx.dt
        delta_alpha, delta_w = delta * alpha, delta * w
        dy = torch.zeros_like(mark_y[0]) if ctx.keep else grad_out.clone()
        dz = torch.zeros_like(dy)
        # Per (sequence, unit): Σ dy_t z_t, Σ dz_t p_t, Σ g_t, Σ g_t y_{t-1}, where
        # p_t = tanh_t + α y_{t-1} and g_t = dz_t (1 − tanh_t²); dL/d(w y + x̃) = −δ g_t,
        # a factor applied once at the end.
        acc_dy_z, acc_dz_p, acc_g, acc_g_y = (torch.zeros_like(dy) for _ in range(4))
        # One segment's states, recomputed: ys[i] = y_{t0+i}, zs[i] = z_{t0+i}, ps[i] = p_{t0+i+1}.
        ys, zs = dy.new_empty(chunk, batch, n), dy.new_empty(chunk + 1, batch, n)
        ps = dy.new_empty(chunk, batch, n)
        steps_work = work.unbind(0)
        steps_grad = grad_out.unbind(0) if ctx.keep else None
        ys, zs, ps = ys.unbind(0), zs.unbind(0), ps.unbind(0)
        for start in range((steps - 1) // chunk * chunk, -1, -chunk):
            size = min(chunk, steps - start)
            ys[0].copy_(mark_y[start // chunk])
            zs[0].copy_(mark_z[start // chunk])
            for i in range(size):
                _next_z(zs[i], steps_work[start + i], ys[i], delta, alpha, ps[i], out=zs[i + 1])
                if i + 1 < size:
                    torch.addcmul(ys[i], delta, zs[i + 1], out=ys[i + 1])
            for i in range(size - 1, -1, -1):
                th = steps_work[start + i]
                if ctx.keep:
                    if mask is None:
                        dy.add_(steps_grad[start + i])
                    else:
                        dy.addcmul_(steps_grad[start + i], mask)
                dz.addcmul_(delta, dy)  # now dL/dz_t through y_t = y + δ z_t as well
                acc_dy_z.addcmul_(dy, zs[i + 1])
                acc_dz_p.addcmul_(dz, ps[i])
                g = tanh_backward(dz, th, out=th)
                acc_g.add_(g)
                acc_g_y.addcmul_(g, ys[i])
                dy.addcmul_(delta_alpha, dz, value=-1.0)
                dy.addcmul_(delta_w, g, value=-1.0)
        scale = -delta
        grads = work.view(steps * batch, n)
        grad_v = (grads.T @ u_rows).mul_(scale[:, None])
        grad_u = None
        if ctx.needs_input_grad[0]:
            grad_u = grads @ (v * scale[:, None])
        grad_b = acc_g.sum(0).mul_(scale)
        grad_w = acc_g_y.sum(0).mul_(scale)
        # dL/dδ = Σ dy_t z_t − Σ dz_t (tanh_t + α y_{t-1})
        grad_delta = acc_dy_z.sum(0) - acc_dz_p.sum(0)
        grad_c = grad_delta * ctx.dt * sig * (1 - sig)
        return grad_u, grad_v, grad_b, grad_w, grad_c, dy, None, None, None, None, None


def _next_z(z, th, y, delta, alpha: float, p, out):
    """z_t = z_{t-1} − δ p_t with p_t = tanh_t + α y_{t-1}, written into `out`, and p_t
    into `p`: the forward and the backward's recomputation share it, bit for bit."""
    torch.add(th, y, alpha=alpha, out=p)
    return torch.addcmul(z, delta, p, value=-1.0, out=out)


class UnICORNNLayer(nn.Module):
    """One layer: u [T, B, m] time-major -> every y [T, B, n] time-major (times the next
    layer's dropout mask where one is given), or y_T [B, n] without `keep`."""

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

    def delta(self) -> torch.Tensor:
        return self.dt * torch.sigmoid(self.c)

    def forward(
        self,
        u: torch.Tensor,
        y0: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        keep: bool = True,
    ) -> torch.Tensor:
        steps, batch = u.shape[0], u.shape[1]
        if y0 is None:
            y0 = u.new_zeros(batch, self.hidden)
        u_rows = u.reshape(steps * batch, u.shape[2])
        args = (self.input.weight, self.input.bias, self.w, self.c, y0, mask)
        return UnICORNNScan.apply(u_rows, *args, self.dt, self.alpha, steps, keep)


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
        self.dropout = dropout
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
        # A layer's output sequence carries the next layer's dropout mask.
        u = x.transpose(0, 1)
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            if index < last:
                u = layer(u, None, self.dropout_mask(x), keep=True)
            else:
                u = layer(u, h0, None, keep=keep)
        return u

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
        return self._run(x, h0, keep=False)

    def states(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
        return self._run(x, h0, keep=True).transpose(0, 1)


@register_model(
    "unicornn",
    description="UnICORNN, stacked undamped oscillators (ICML 2021)",
    options=UnICORNNOptions,
)
def unicornn(*, input_size, output_size, hidden, options: UnICORNNOptions):
    encoder = UnICORNNEncoder(input_size, hidden, **options.model_dump())
    model = SequenceClassifier(encoder, hidden, output_size)
    nn.init.kaiming_normal_(model.head.weight)
    nn.init.zeros_(model.head.bias)  # the official init zeroes every bias, the classifier's too
    return model
