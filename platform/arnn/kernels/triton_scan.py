"""Triton kernels for the antisymmetric recurrences (Eq. 12 and 13).

Forward: one persistent program per tile of BLOCK_B batch rows walks all T steps with
A^T held on chip; the input projection u (all steps, one matmul) comes in precomputed.
It stores, per step, the state that entered the step and the activations, time-major
[T, B, H] like the gradient of u, so that the backward's product needs no copy.

Backward: one program per tile walks back in time carrying only dh; it writes
g_t = dL/dpre_t into the gradient of u. The gradient of A is then one large product,
dA^T = sum_t h_{t-1}^T g_t, taken by torch after the kernel.

Products are float32-exact on tf32 tensor cores: each operand is split into a tf32 high
part and a tf32 low part, and the three products that matter are taken independently
(no dependent chain between them) and summed, small ones first. Triton's own "tf32x3"
chains the three through one accumulator, which triples the latency of every step.

Hidden sizes up to arnn.kernels.FUSED_MAX_HIDDEN: the high and low parts of A^T live in
one SM's shared memory, 2 * 4 * H^2 bytes, 128 KiB at H = 128; at H = 256 they would need
512 KiB where an H100 has 227 KiB, so larger models take the eager path.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK_B = 16


@triton.jit
def _tanh(x):
    # exp-based, with the series near 0 where 1 - exp(-2|x|) would cancel
    e = tl.exp(-2.0 * tl.abs(x))
    big = (1.0 - e) / (1.0 + e)
    big = tl.where(x < 0, -big, big)
    x2 = x * x
    small = x * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 + x2 * (-17.0 / 315.0))))
    return tl.where(tl.abs(x) < 0.05, small, big)


@triton.jit
def _round_tf32(x):
    """x rounded to the nearest tf32 number (10 mantissa bits), ties away from zero."""
    bits = x.to(tl.uint32, bitcast=True)
    return ((bits + 0x1000) & 0xFFFFE000).to(tl.float32, bitcast=True)


@triton.jit
def _split_tf32(x):
    """x = high + low to within 2^-22 of x, both exact tf32 numbers."""
    high = _round_tf32(x)
    return high, _round_tf32(x - high)


@triton.jit
def _dot_f32(x, y_high, y_low):
    """x @ y as exact as float32, on tf32 tensor cores; y comes split (it is loop-invariant).
    The three products are independent; only low @ low (below 2^-22) is left out."""
    x_high, x_low = _split_tf32(x)
    low_high = tl.dot(x_low, y_high, input_precision="tf32")
    high_low = tl.dot(x_high, y_low, input_precision="tf32")
    high_high = tl.dot(x_high, y_high, input_precision="tf32")
    # Subtractions where one would write additions: Triton folds "dot + x" into the dot's
    # accumulator, which would chain the three products again.
    return high_high - ((0.0 - low_high) - high_low)


@triton.jit
def _transpose_split(M, cols, col_ok, H: tl.constexpr):
    """M^T (M row-major H x H) as a dot's right operand, split into its tf32 parts. Read
    this way round, the operand's K dimension is contiguous, which lets the tensor cores'
    loads from shared memory take whole 8x8 tiles (ldmatrix) instead of single words."""
    m_t = tl.load(
        M + cols[None, :] * H + cols[:, None], mask=col_ok[:, None] & col_ok[None, :], other=0.0
    )
    return _split_tf32(m_t)


@triton.jit
def _tile(B, H: tl.constexpr, HP: tl.constexpr, BLOCK: tl.constexpr):
    """This program's batch rows and the (padded) hidden columns, with their masks."""
    rows = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    cols = tl.arange(0, HP)
    col_ok = cols < H
    tile_ok = (rows < B)[:, None] & col_ok[None, :]
    return rows, cols, col_ok, tile_ok


@triton.jit
def _forward_kernel(
    U,
    A,
    H0,
    PREV,
    CAND,
    GATE,
    LAST,
    B,
    T,
    stride_ub,
    stride_ut,
    eps,
    H: tl.constexpr,
    HP: tl.constexpr,
    BLOCK: tl.constexpr,
    GATED: tl.constexpr,
):
    rows, cols, col_ok, tile_ok = _tile(B, H, HP, BLOCK)
    a_t_high, a_t_low = _transpose_split(A, cols, col_ok, H)
    h = tl.load(H0 + rows[:, None] * H + cols[None, :], mask=tile_ok, other=0.0)
    u_row = U + rows[:, None] * stride_ub + cols[None, :]
    out_row = rows[:, None] * H + cols[None, :]
    u_h = tl.load(u_row, mask=tile_ok, other=0.0)
    u_z = u_h
    if GATED:
        u_z = tl.load(u_row + H, mask=tile_ok, other=0.0)
    for t in range(T):
        # The next step's inputs, asked for now: their latency hides behind this step.
        ahead = tile_ok & (t + 1 < T)
        u_h_next = tl.load(u_row + (t + 1) * stride_ut, mask=ahead, other=0.0)
        u_z_next = u_h_next
        if GATED:
            u_z_next = tl.load(u_row + (t + 1) * stride_ut + H, mask=ahead, other=0.0)
        tl.store(PREV + out_row + t * B * H, h, mask=tile_ok)
        ah = _dot_f32(h, a_t_high, a_t_low)
        candidate = _tanh(ah + u_h)
        tl.store(CAND + out_row + t * B * H, candidate, mask=tile_ok)
        if GATED:
            gate = tl.sigmoid(ah + u_z)
            tl.store(GATE + out_row + t * B * H, gate, mask=tile_ok)
            h = h + eps * gate * candidate
        else:
            h = h + eps * candidate
        u_h, u_z = u_h_next, u_z_next
    tl.store(LAST + rows[:, None] * H + cols[None, :], h, mask=tile_ok)


@triton.jit
def _backward_kernel(
    A_T,
    CAND,
    GATE,
    GRAD_LAST,
    GRAD_STATES,
    GRAD_U,
    GRAD_H0,
    B,
    T,
    stride_sb,
    stride_st,
    eps,
    H: tl.constexpr,
    HP: tl.constexpr,
    BLOCK: tl.constexpr,
    GATED: tl.constexpr,
    HAS_LAST: tl.constexpr,
    HAS_STATES: tl.constexpr,
):
    rows, cols, col_ok, tile_ok = _tile(B, H, HP, BLOCK)
    width = 2 * H if GATED else H
    a_high, a_low = _transpose_split(A_T, cols, col_ok, H)
    tile = rows[:, None] * H + cols[None, :]
    if HAS_LAST:
        dh = tl.load(GRAD_LAST + tile, mask=tile_ok, other=0.0)
    else:
        dh = tl.zeros((BLOCK, HP), dtype=tl.float32)
    act_row = rows[:, None] * H + cols[None, :]
    g_row = GRAD_U + rows[:, None] * width + cols[None, :]  # time-major [T, B, width]
    state_row = GRAD_STATES + rows[:, None] * stride_sb + cols[None, :]
    for step in range(T):
        t = T - 1 - step
        if HAS_STATES:  # dL/dh_t from the output of every state
            dh += tl.load(state_row + t * stride_st, mask=tile_ok, other=0.0)
        candidate = tl.load(CAND + act_row + t * B * H, mask=tile_ok, other=0.0)
        if GATED:
            gate = tl.load(GATE + act_row + t * B * H, mask=tile_ok, other=0.0)
            g_h = eps * dh * gate * (1.0 - candidate * candidate)
            g_z = eps * dh * candidate * gate * (1.0 - gate)
            tl.store(g_row + t * B * width, g_h, mask=tile_ok)
            tl.store(g_row + t * B * width + H, g_z, mask=tile_ok)
            g = g_h + g_z
        else:
            g = eps * dh * (1.0 - candidate * candidate)
            tl.store(g_row + t * B * width, g, mask=tile_ok)
        dh = dh + _dot_f32(g, a_high, a_low)
    tl.store(GRAD_H0 + tile, dh, mask=tile_ok)


def launch_settings(hidden: int) -> dict:
    """The constants and warps of both kernels for a hidden size up to FUSED_MAX_HIDDEN.

    Eight warps at H = 128: with four, the per-warp slices of A's two parts overflow the
    255 registers a thread has and spill (see arnn.kernels.resources).
    """
    padded = max(16, triton.next_power_of_2(hidden))
    return {"H": hidden, "HP": padded, "BLOCK": BLOCK_B, "num_warps": 8 if padded >= 128 else 4}


class FusedScan(torch.autograd.Function):
    """The same contract as RecurrenceScan: apply(u, a_t, h0, eps, gated, keep)."""

    @staticmethod
    def forward(ctx, u, a_t, h0, eps: float, gated: bool, keep: bool):
        if u.stride(-1) != 1:
            u = u.contiguous()
        a_t, h0 = a_t.contiguous(), h0.contiguous()
        batch, steps, hidden = u.shape[0], u.shape[1], a_t.shape[0]
        previous = u.new_empty(steps, batch, hidden)  # time-major
        candidates = u.new_empty(steps, batch, hidden)
        gates = u.new_empty(steps, batch, hidden) if gated else candidates
        last = u.new_empty(batch, hidden)
        grid = (triton.cdiv(batch, BLOCK_B),)
        _forward_kernel[grid](
            u,
            a_t.T.contiguous(),  # A: see _transpose_split
            h0,
            previous,
            candidates,
            gates,
            last,
            batch,
            steps,
            u.stride(0),
            u.stride(1),
            float(eps),
            GATED=gated,
            **launch_settings(hidden),
        )
        ctx.save_for_backward(a_t, previous, candidates, gates if gated else None)
        ctx.eps, ctx.gated, ctx.keep = eps, gated, keep
        ctx.set_materialize_grads(False)
        if keep:
            return torch.cat([previous[1:], last.unsqueeze(0)]).transpose(0, 1)
        return last

    @staticmethod
    def backward(ctx, grad_out):
        a_t, previous, candidates, gates = ctx.saved_tensors
        steps, batch, hidden = previous.shape
        width = hidden * (2 if ctx.gated else 1)
        grad_u = previous.new_empty(steps, batch, width)  # time-major, like u
        grad_h0 = previous.new_empty(batch, hidden)
        if grad_out is None:
            grad_out = previous.new_zeros(batch, hidden)
        if grad_out.stride(-1) != 1:
            grad_out = grad_out.contiguous()
        states_strides = (grad_out.stride(0), grad_out.stride(1)) if ctx.keep else (0, 0)
        grid = (triton.cdiv(batch, BLOCK_B),)
        _backward_kernel[grid](
            a_t,
            candidates,
            gates if ctx.gated else candidates,
            grad_out,
            grad_out,
            grad_u,
            grad_h0,
            batch,
            steps,
            *states_strides,
            float(ctx.eps),
            GATED=ctx.gated,
            HAS_LAST=not ctx.keep,
            HAS_STATES=ctx.keep,
            **launch_settings(hidden),
        )
        grad_pre = grad_u[..., :hidden] + grad_u[..., hidden:] if ctx.gated else grad_u
        grad_a_t = previous.reshape(-1, hidden).T @ grad_pre.reshape(-1, hidden)
        return grad_u.transpose(0, 1), grad_a_t, grad_h0, None, None, None
