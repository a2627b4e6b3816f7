"""What the fused kernels ask of one H100 SM, found without a GPU: each variant is compiled
ahead of time for sm_90 by Triton, then assembled by its ptxas, which reports registers
per thread and spilled bytes; Triton reports the shared memory.

    python -m arnn.kernels.resources [--hidden 32,64,128,256] [--json]

Run it without TRITON_INTERPRET=1: under the interpreter there is nothing to compile.
A variant that needs more shared memory than an SM has fails at launch on the GPU; one
that spills registers runs, slower. Neither needs a GPU to be seen.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from arnn.kernels import triton_scan
from arnn.tables import console

H100 = GPUTarget("cuda", 90, 32)
H100_SHARED_BYTES = 232_448  # the most one block may opt into on sm_90 (227 KiB)
_INTEGERS = {"B", "T", "stride_ub", "stride_ut", "stride_sb", "stride_st"}


@dataclass(frozen=True)
class Resources:
    kernel: str  # forward or backward
    hidden: int
    gated: bool
    keep: bool  # every state is an output (backward only)
    shared_bytes: int
    registers: int
    spilled_bytes: int

    @property
    def fits(self) -> bool:
        return self.shared_bytes <= H100_SHARED_BYTES


def _signature(fn, constants: dict) -> dict[str, str]:
    kinds = {}
    for name in fn.arg_names:
        if name in constants:
            kinds[name] = "constexpr"
        elif name in _INTEGERS:
            kinds[name] = "i32"
        elif name == "eps":
            kinds[name] = "fp32"
        else:
            kinds[name] = "*fp32"
    return kinds


def compile_variant(kernel: str, hidden: int, gated: bool, keep: bool = False) -> Resources:
    """Compile one kernel for sm_90 with the launch settings the autograd Function uses."""
    settings = triton_scan.launch_settings(hidden)
    warps = settings.pop("num_warps")
    constants = {**settings, "GATED": gated}
    if kernel == "forward":
        fn = triton_scan._forward_kernel
    else:
        fn = triton_scan._backward_kernel
        constants.update(HAS_LAST=not keep, HAS_STATES=keep)
    source = ASTSource(fn, _signature(fn, constants), constexprs=constants)
    compiled = triton.compile(source, target=H100, options={"num_warps": warps})
    registers, spilled = _assemble(compiled.asm["ptx"])
    return Resources(kernel, hidden, gated, keep, compiled.metadata.shared, registers, spilled)


def _assemble(ptx: str) -> tuple[int, int]:
    """(registers per thread, spilled bytes stored) as ptxas -v reports them for sm_90a."""
    from triton.backends.nvidia.compiler import get_ptxas

    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "kernel.ptx"
        source.write_text(ptx)
        report = subprocess.run(
            [get_ptxas(90).path, "-v", "--gpu-name=sm_90a", str(source), "-o", "/dev/null"],
            capture_output=True,
            text=True,
            check=True,
        ).stderr
    registers = re.search(r"Used (\d+) registers", report)
    spilled = re.search(r"(\d+) bytes spill stores", report)
    if registers is None or spilled is None:
        raise RuntimeError(f"unexpected ptxas report: {report.strip()[:300]}")
    return int(registers.group(1)), int(spilled.group(1))


def variants(hiddens: Sequence[int]):
    for hidden in hiddens:
        for gated in (False, True):
            yield "forward", hidden, gated, False
            yield "backward", hidden, gated, False
            yield "backward", hidden, gated, True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m arnn.kernels.resources", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--hidden", default="32,64,128,256", help="comma-separated sizes")
    parser.add_argument("--json", action="store_true", help="one JSON list instead of a table")
    args = parser.parse_args(argv)
    hiddens = [int(h) for h in args.hidden.split(",")]
    found = [compile_variant(*variant) for variant in variants(hiddens)]
    if args.json:
        print(json.dumps([{**dataclasses.asdict(r), "fits": r.fits} for r in found]))
        return 0
    table = pd.DataFrame(
        {
            "kernel": [r.kernel for r in found],
            "H": [r.hidden for r in found],
            "gated": [str(r.gated) for r in found],
            "keep": [str(r.keep) for r in found],
            "shared": [r.shared_bytes for r in found],
            "regs": [r.registers for r in found],
            "spilled": [r.spilled_bytes for r in found],
            "note": [
                "" if r.fits else f"exceeds {H100_SHARED_BYTES} bytes: fails at launch"
                for r in found
            ],
        }
    )
    print(console(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
