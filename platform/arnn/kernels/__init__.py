"""The antisymmetric recurrence, two ways behind one call:

    scan = choose_scan(kernel, x, hidden)
    out = scan(x, input_layer, a_t, h0, eps, gated, keep)

"eager" (RecurrenceScan, any device), "fused" (Triton: CUDA, or the CPU under
TRITON_INTERPRET=1, for hidden sizes up to FUSED_MAX_HIDDEN), or "auto" (fused for
float32 CUDA tensors where it can run, else eager).
"""

from __future__ import annotations

import functools
import os

import torch

from arnn.errors import UsageError
from arnn.kernels.eager import RecurrenceScan

KERNELS = ("auto", "eager", "fused")
# The fused kernels hold A^T on one SM, split in two tf32 parts: 2 * 4 * H^2 bytes of
# shared memory. H = 256 would need 512 KiB; an H100 has 227 KiB.
FUSED_MAX_HIDDEN = 128


@functools.cache
def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def fused_fits(hidden: int) -> bool:
    return hidden <= FUSED_MAX_HIDDEN


def check_fused_fits(hidden: int) -> None:
    """The hidden-size limit of the fused kernels (a property of the configuration)."""
    if not fused_fits(hidden):
        raise UsageError(
            f"fused supports hidden sizes up to {FUSED_MAX_HIDDEN} (A must fit in one GPU "
            f"core's shared memory), got hidden {hidden}; use auto or eager"
        )


def check_kernel(kernel: str, device: torch.device) -> None:
    """Refuse, before anything runs, a fused kernel where it cannot run."""
    if kernel != "fused":
        return
    if not triton_available():
        raise UsageError("--kernel fused: triton is not installed")
    if device.type != "cuda" and not interpreting():
        raise UsageError(
            f"--kernel fused: needs a CUDA device (or TRITON_INTERPRET=1), got {device}"
        )


def eager_scan(x, input_layer, a_t, h0, eps, gated, keep):
    return RecurrenceScan.apply(x, input_layer.weight, input_layer.bias, a_t, h0, eps, gated, keep)


def fused_scan(x, input_layer, a_t, h0, eps, gated, keep):
    from arnn.kernels.triton_scan import FusedScan

    # u as [B, T, kH] over time-major storage: each step's slice is one block.
    u = input_layer(x.transpose(0, 1)).transpose(0, 1)
    return FusedScan.apply(u, a_t, h0, eps, gated, keep)


def choose_scan(kernel: str, tensor: torch.Tensor, hidden: int):
    if kernel == "eager":
        return eager_scan
    if kernel == "fused":
        check_fused_fits(hidden)
        check_kernel(kernel, tensor.device)
        return fused_scan
    fits = fused_fits(hidden) and tensor.dtype == torch.float32
    if tensor.is_cuda and fits and triton_available():
        return fused_scan
    return eager_scan
