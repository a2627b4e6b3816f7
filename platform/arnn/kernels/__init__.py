"""The antisymmetric recurrence, two ways behind one call:

    scan = choose_scan(kernel, x, hidden)
    out = scan(x, input_layer, a_t, h0, eps, gated, keep)

"eager" (RecurrenceScan, any device), "fused" (Triton: CUDA, or the CPU under
TRITON_INTERPRET=1, for hidden sizes up to FUSED_MAX_HIDDEN), or "auto" (fused for
float32 CUDA tensors where it can run, else eager).

The first time a process would take the fused path on a device at a hidden size, a small
self-check (arnn.kernels.selfcheck) compares it with the eager path there; if they
disagree, one warning names the device and the error, and that device (at that size) takes
the eager path for the rest of the process. `resolve_kernel` says which path a model will
take; `choose_scan` goes by the same answer.
"""

from __future__ import annotations

import functools
import os
import warnings

import torch

from arnn.errors import UsageError
from arnn.kernel_limits import FUSED_MAX_HIDDEN, check_fused_fits, fused_fits  # noqa: F401
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


def _device_key(device: torch.device | str) -> str:
    """The device as a key: "cuda" is the current CUDA device, named with its index."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return str(device)


@functools.cache
def fused_verified(device: str, hidden: int) -> bool:
    """Whether the fused kernels agree with the eager path on `device` (a full device
    string, as _device_key gives) at `hidden`; checked once per process, and on a
    disagreement one warning. arnn.kernels.selfcheck says how. `fused_verified.cache_clear()`
    forgets every verdict."""
    from arnn.kernels import selfcheck

    # Looked up here, at call time: the functions a model would call.
    problem = selfcheck.fused_error(torch.device(device), hidden, fused_scan, eager_scan)
    if problem is None:
        return True
    warnings.warn(
        f"arnn: the fused Triton kernels disagree with the eager path on {device} at hidden "
        f"{hidden}: {problem}; {device} takes the eager path for the rest of this process",
        RuntimeWarning,
        stacklevel=2,
    )
    return False


def resolve_kernel(
    kernel: str, device: torch.device | str, hidden: int, dtype: torch.dtype = torch.float32
) -> str:
    """The path ("eager" or "fused") that a model asked for `kernel` will take on `device`
    at `hidden` with `dtype` parameters. Where that would be "fused", the self-check runs
    first (once per device and hidden size in a process) and a failed one makes it "eager".
    "fused" where it cannot run at all is a UsageError, as before anything runs."""
    if kernel not in KERNELS:
        raise UsageError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    if kernel == "eager":
        return "eager"
    device = torch.device(device)
    if kernel == "fused":
        check_fused_fits(hidden)
        check_kernel(kernel, device)
    elif not (
        device.type == "cuda"
        and fused_fits(hidden)
        and dtype == torch.float32
        and triton_available()
    ):
        return "eager"  # auto: the CPU, a float64 model, a hidden size too large
    return "fused" if fused_verified(_device_key(device), hidden) else "eager"


def choose_scan(kernel: str, tensor: torch.Tensor, hidden: int):
    """The scan function for `tensor`'s device and dtype: resolve_kernel's answer."""
    if resolve_kernel(kernel, tensor.device, hidden, tensor.dtype) == "fused":
        return fused_scan
    return eager_scan
