"""The fused kernels compiled for an H100 (sm_90) here, without a GPU: every variant the
autograd Function launches fits one SM's shared memory and does not spill in earnest;
twice the hidden-size limit would not fit, which is why the limit is what it is.

Compiling needs Triton outside its interpreter, so the tool runs in a subprocess
without TRITON_INTERPRET (which conftest sets on machines without CUDA)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")

from arnn.kernels import FUSED_MAX_HIDDEN  # noqa: E402


@pytest.fixture(scope="module")
def compiled() -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    sizes = f"32,{FUSED_MAX_HIDDEN},{2 * FUSED_MAX_HIDDEN}"
    done = subprocess.run(
        [sys.executable, "-m", "arnn.kernels.resources", "--hidden", sizes, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0 and "ptxas" in done.stderr:
        pytest.skip(f"triton cannot assemble for sm_90 here: {done.stderr.strip()[-300:]}")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.mark.parametrize("hidden", [32, FUSED_MAX_HIDDEN])
def test_every_variant_fits_an_h100_sm(compiled, hidden):
    variants = [r for r in compiled if r["hidden"] == hidden]
    assert len(variants) == 6  # forward, backward, backward of every state; gated or not
    for found in variants:
        assert found["fits"], found
        assert found["spilled_bytes"] <= 64, found  # four warps at H=128 spilled 376 bytes


def test_twice_the_limit_would_not_fit(compiled):
    above = [r for r in compiled if r["hidden"] == 2 * FUSED_MAX_HIDDEN]
    assert above and not any(r["fits"] for r in above)
