"""What the fused kernels can hold, as a property of a configuration: checked by
arnn.config with no torch loaded (arnn.kernels, which computes, re-exports it)."""

from __future__ import annotations

from arnn.errors import UsageError

# The fused kernels hold A^T on one SM, split in two tf32 parts: 2 * 4 * H^2 bytes of
# shared memory. H = 256 would need 512 KiB; an H100 has 227 KiB.
FUSED_MAX_HIDDEN = 128


def fused_fits(hidden: int) -> bool:
    return hidden <= FUSED_MAX_HIDDEN


def check_fused_fits(hidden: int) -> None:
    """The hidden-size limit of the fused kernels (a property of the configuration)."""
    if not fused_fits(hidden):
        raise UsageError(
            f"fused supports hidden sizes up to {FUSED_MAX_HIDDEN} (A must fit in one GPU "
            f"core's shared memory), got hidden {hidden}; use auto or eager"
        )
