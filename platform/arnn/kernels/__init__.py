"""The antisymmetric recurrence, two ways behind one call:

    scan = choose_scan(kernel, x)
    out = scan(x, input_layer, a_t, h0, eps, gated, keep)

"eager" (RecurrenceScan, any device), "fused" (Triton: CUDA, or the CPU under
TRITON_INTERPRET=1), or "auto" (fused for float32 CUDA tensors when Triton is
importable, else eager).
"""

from __future__ import annotations

import functools
import os

import torch

from arnn.errors import UsageError
from arnn.kernels.eager import RecurrenceScan

KERNELS = ("auto", "eager", "fused")


@functools.cache
def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


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


def choose_scan(kernel: str, tensor: torch.Tensor):
    if kernel == "eager":
        return eager_scan
    if kernel == "fused":
        check_kernel(kernel, tensor.device)
        return fused_scan
    if tensor.is_cuda and tensor.dtype == torch.float32 and triton_available():
        return fused_scan
    return eager_scan
