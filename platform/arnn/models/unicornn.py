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
recurrence without a graph and stores every state (y and z, time-major); the backward
walks back in time from the stored states (it does not invert the step as the official
CUDA kernel does, so its gradients are exact to rounding for any T), carrying only
(dy, dz) and accumulating the gradients of w and c per (sequence, unit) in [B, n]
accumulators that are summed once at the end; the input map's gradients are single GEMMs
after the reverse loop. `h0`, where given, is the last layer's y_0 (z_0 = 0; the layers
below start at 0).
"""

from __future__ import annotations

import pydantic
import torch
from torch import nn
from torch.autograd.function import once_differentiable

from arnn.kernels.eager import refuse_second_backward
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

    @staticmethod
    def forward(ctx, u_rows, v, b, w, c, y0, mask, dt: float, alpha: float, steps, keep):
        batch, n = y0.shape
        # tanh(q) = 2 sigmoid(2q) − 1: the buffer holds 2 x̃ and each step's slice becomes
        # s = sigmoid(2 w y + 2 x̃). (torch's CPU tanh runs on several threads above 2,048
        # elements; on a busy machine every step then waits for the other thread.)
        work = torch.addmm(b * 2, u_rows, v.T * 2).view(steps, batch, n)
        delta = torch.sigmoid(c).mul_(dt)
        two_w, two_delta, delta_alpha = 2 * w, 2 * delta, delta * alpha
        # The per-step states are small separate tensors, which the allocator recycles (a
        # fresh 50 MB buffer costs ~25 ms of page faults); only the output is one buffer.
        seq = y0.new_empty(steps, batch, n) if keep else None
        ys, zs = [y0], [torch.zeros_like(y0)]
        for t in range(steps):
            y = ys[t]
            s = work[t].addcmul_(two_w, y).sigmoid_()
            # z_t = z − δ (2s − 1 + α y) = (z + δ) − 2δ s − δα y
            z = torch.add(zs[t], delta)
            z.addcmul_(two_delta, s, value=-1.0).addcmul_(delta_alpha, y, value=-1.0)
            if keep and mask is None:
                y = torch.addcmul(y, delta, z, out=seq[t])
            else:
                y = torch.addcmul(y, delta, z)
                if keep:
                    torch.mul(y, mask, out=seq[t])
            ys.append(y)
            zs.append(z)
        ctx.save_for_backward(u_rows, v, w, c)
        ctx.work, ctx.ys, ctx.zs = work, ys, zs
        ctx.dt, ctx.alpha, ctx.mask, ctx.keep = dt, alpha, mask, keep
        return seq if keep else ys[-1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        refuse_second_backward(ctx.work, "UnICORNNScan")
        u_rows, v, w, c = ctx.saved_tensors
        work, ys, zs, dt, alpha, mask = ctx.work, ctx.ys, ctx.zs, ctx.dt, ctx.alpha, ctx.mask
        if UnICORNNScan.retain_activations:
            work = work.clone()
        else:
            ctx.work = ctx.ys = ctx.zs = None
        steps, batch, n = work.shape
        sig = torch.sigmoid(c)
        delta = sig * dt
        delta_alpha, four_delta_w = delta * alpha, 4 * delta * w
        dy = torch.zeros_like(ys[0]) if ctx.keep else grad_out.clone()
        dz = torch.zeros_like(dy)
        # Per (sequence, unit): Σ dy_t z_t, Σ dz_t s_t, Σ dz_t, Σ dz_t y_{t-1}, Σ g_t y_{t-1}.
        acc_dy_z, acc_dz_s, acc_dz, acc_dz_y, acc_g_y = (torch.zeros_like(dy) for _ in range(5))
        # With th = 2s − 1, 1 − th² = 4 s (1 − s): g_t = dz_t s_t (1 − s_t) and
        # dL/d(w y + x̃) = −4δ g_t, a factor applied once at the end.
        for t in range(steps - 1, -1, -1):
            if ctx.keep:
                if mask is None:
                    dy.add_(grad_out[t])
                else:
                    dy.addcmul_(grad_out[t], mask)
            y_prev, s = ys[t], work[t]
            dz.addcmul_(delta, dy)  # now dL/dz_t through y_t = y + δ z_t as well
            acc_dy_z.addcmul_(dy, zs[t + 1])
            acc_dz_s.addcmul_(dz, s)
            acc_dz.add_(dz)
            acc_dz_y.addcmul_(dz, y_prev)
            g = _sigmoid_backward(dz, s, out=s)
            acc_g_y.addcmul_(g, y_prev)
            dy.addcmul_(delta_alpha, dz, value=-1.0)
            dy.addcmul_(four_delta_w, g, value=-1.0)
        scale = -4 * delta
        grads = work.view(steps * batch, n)
        grad_u = None
        if ctx.needs_input_grad[0]:
            grad_u = grads @ (v * scale[:, None])
        grad_v = (grads.T @ u_rows).mul_(scale[:, None])
        grad_b = grads.sum(0).mul_(scale)
        grad_w = acc_g_y.sum(0).mul_(scale)
        # dL/dδ = Σ dy_t z_t − Σ dz_t (2 s_t − 1 + α y_{t-1})
        grad_delta = acc_dy_z.sum(0) - 2 * acc_dz_s.sum(0) + acc_dz.sum(0) - alpha * acc_dz_y.sum(0)
        grad_c = grad_delta * dt * sig * (1 - sig)
        return grad_u, grad_v, grad_b, grad_w, grad_c, dy, None, None, None, None, None


def _sigmoid_backward(grad, output, out):
    """grad * output * (1 - output), written into `out` (which may be `output` itself)."""
    return torch.ops.aten.sigmoid_backward.grad_input(grad, output, grad_input=out)


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
    encoder = UnICORNNEncoder(
        input_size,
        hidden,
        dt=options.dt,
        alpha=options.alpha,
        layers=options.layers,
        dropout=options.dropout,
    )
    model = SequenceClassifier(encoder, hidden, output_size)
    nn.init.kaiming_normal_(model.head.weight)
    nn.init.zeros_(model.head.bias)  # the official init zeroes every bias, the classifier's too
    return model
