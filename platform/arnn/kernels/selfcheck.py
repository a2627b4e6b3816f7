"""A fused kernel's first use on a device is checked against the eager path there.

The Triton kernels are compiled per device and per hidden size (H, its padded width and
the warp count are compile-time constants), so a kernel that is right on one GPU or at one
size says nothing about another. Before a process first runs the fused path on a device at
a hidden size, `fused_error` runs both paths at small shapes on that device:

    B = 5 (not a multiple of the tile, BLOCK_B = 16), T = 16, m = 3 inputs, the hidden
    size asked for; plain and gated, final state only and every state (each branch of
    both kernels); float32, from a seeded generator (the global RNG is left alone).

Each of the outputs and gradients (h, dx, dV, db, dA, dh0) is compared with the eager
path run in float64 on the same device, with the bound tests/kernels/test_fused.py holds
the kernels to: relative error at most max(1e-5, 4 x eager float32's own error). The
recurrence here is far from chaotic (eps 0.1, gamma 0.01, sigma_w 1), so eager float32's
error is ~1e-7 and the bound is 1e-5: a kernel off by 1e-2 in one output or gradient
fails by three orders of magnitude, while the split-tf32 products pass with room to spare.
"""

from __future__ import annotations

import contextlib

import torch

BATCH, STEPS, INPUTS = 5, 16, 3
EPS, GAMMA, SIGMA_W = 0.1, 0.01, 1.0
NAMES = ("h", "dx", "dV", "db", "dA", "dh0")


def _relative(x: torch.Tensor, reference: torch.Tensor) -> float:
    return ((x.double() - reference).norm() / reference.norm().clamp_min(1e-30)).item()


def _inputs(hidden: int, gated: bool, keep: bool, seed: int) -> dict[str, torch.Tensor]:
    """The problem on the CPU, in float64, from its own generator."""
    g = torch.Generator().manual_seed(seed)
    width = hidden * (2 if gated else 1)
    w = torch.randn(hidden, hidden, generator=g, dtype=torch.float64) * SIGMA_W / hidden**0.5
    a = w - w.T - GAMMA * torch.eye(hidden, dtype=torch.float64)
    shape = (BATCH, STEPS, hidden) if keep else (BATCH, hidden)
    return {
        "x": torch.randn(BATCH, STEPS, INPUTS, generator=g, dtype=torch.float64),
        "weight": torch.randn(width, INPUTS, generator=g, dtype=torch.float64) / INPUTS**0.5,
        "bias": 0.1 * torch.randn(width, generator=g, dtype=torch.float64),
        "a_t": a.T.contiguous(),
        "h0": 0.1 * torch.randn(BATCH, hidden, generator=g, dtype=torch.float64),
        "weights": torch.randn(shape, generator=g, dtype=torch.float64),
    }


def _run(scan, problem, device, dtype, gated: bool, keep: bool) -> list[torch.Tensor]:
    """The output and every gradient of sum(out * weights) through `scan`, which has
    arnn.kernels' calling convention: scan(x, input_layer, a_t, h0, eps, gated, keep)."""
    t = {k: v.to(device=device, dtype=dtype) for k, v in problem.items()}
    # skip_init: no draw from the global generator, which a seeded run goes on using
    layer = torch.nn.utils.skip_init(
        torch.nn.Linear, INPUTS, t["weight"].shape[0], device=device, dtype=dtype
    )
    with torch.no_grad():
        layer.weight.copy_(t["weight"])
        layer.bias.copy_(t["bias"])
    x, a_t, h0 = (t[k].requires_grad_() for k in ("x", "a_t", "h0"))
    out = scan(x, layer, a_t, h0, EPS, gated, keep)
    leaves = (x, layer.weight, layer.bias, a_t, h0)
    grads = torch.autograd.grad((out * t["weights"]).sum(), leaves)
    return [out.detach(), *grads]


def fused_error(device: torch.device, hidden: int, fused, eager) -> str | None:
    """None where `fused` agrees with `eager` on `device` at `hidden`, else what went
    wrong, in a few words (the first tensor out of bounds and its error, or the error the
    fused path raised)."""
    guard = torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
    with (
        guard,
        torch.inference_mode(False),
        torch.enable_grad(),
        torch.autocast(device.type, enabled=False),
    ):
        for seed, (gated, keep) in enumerate(
            [(False, False), (False, True), (True, False), (True, True)]
        ):
            problem = _inputs(hidden, gated, keep, seed)
            reference = _run(eager, problem, device, torch.float64, gated, keep)
            plain = _run(eager, problem, device, torch.float32, gated, keep)
            try:
                candidate = _run(fused, problem, device, torch.float32, gated, keep)
            except Exception as error:  # a kernel that fails to compile or launch there
                first = str(error).strip().splitlines()[0] if str(error).strip() else ""
                return f"{'gated ' if gated else ''}check raised {type(error).__name__}: {first}"
            case = f"{'gated' if gated else 'plain'}, {'every state' if keep else 'last state'}"
            for name, e, f, r in zip(NAMES, plain, candidate, reference, strict=True):
                if f.shape != r.shape:
                    return f"{name} ({case}) has shape {tuple(f.shape)}, not {tuple(r.shape)}"
                if not torch.isfinite(f).all():
                    return f"{name} ({case}) is not finite"
                eager_error = _relative(e, r)
                if eager_error > 1e-2:  # chaotic: cannot happen at these settings
                    continue
                bound = max(1e-5, 4 * eager_error)
                error = _relative(f, r)
                if error > bound:
                    return (
                        f"{name} ({case}) relative error {error:.1e} against float64, "
                        f"bound {bound:.1e} (eager float32: {eager_error:.1e})"
                    )
    return None
