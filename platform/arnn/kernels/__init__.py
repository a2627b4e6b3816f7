"""Fused GPU recurrences (Triton) behind the same interface as the eager RecurrenceScan.

`choose_scan(kernel, tensor)` picks the implementation: "eager" (RecurrenceScan, any
device), "fused" (Triton: CUDA, or the CPU under TRITON_INTERPRET=1), or "auto" (fused
for float32 CUDA tensors when Triton is importable, else eager).
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


def choose_scan(kernel: str, tensor: torch.Tensor):
    if kernel == "eager":
        return RecurrenceScan
    if kernel == "fused":
        check_kernel(kernel, tensor.device)
        from arnn.kernels.triton_scan import FusedScan

        return FusedScan
    if tensor.is_cuda and tensor.dtype == torch.float32 and triton_available():
        from arnn.kernels.triton_scan import FusedScan

        return FusedScan
    return RecurrenceScan
