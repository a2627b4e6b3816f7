"""The fused kernels' self-check: the real kernel passes it (on the CPU through the Triton
interpreter, which conftest turns on without a GPU), and a wrong one is caught, warned
about once, and replaced by the eager path in what resolve_kernel says and in what
choose_scan and a model actually run."""

from __future__ import annotations

import time
import warnings

import pytest
import torch

pytest.importorskip("triton")

import arnn.kernels as kernels  # noqa: E402
from arnn.errors import UsageError  # noqa: E402
from arnn.kernels import (  # noqa: E402
    choose_scan,
    eager_scan,
    fused_verified,
    resolve_kernel,
)
from arnn.kernels.selfcheck import fused_error  # noqa: E402
from arnn.models import create_model  # noqa: E402

CPU = torch.device("cpu")
REAL_FUSED = kernels.fused_scan


@pytest.fixture(autouse=True)
def _fresh_verdicts(monkeypatch):
    """Each test starts with no verdict and leaves none behind for other tests."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # the fused path on the CPU
    fused_verified.cache_clear()
    yield
    fused_verified.cache_clear()


def _off_by_1e2(x, input_layer, a_t, h0, eps, gated, keep):
    return REAL_FUSED(x, input_layer, a_t, h0, eps, gated, keep) + 1e-2


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t):
        return t.view_as(t)

    @staticmethod
    def backward(ctx, grad):
        return grad * 1.01


def _wrong_grad_of_a(x, input_layer, a_t, h0, eps, gated, keep):
    return REAL_FUSED(x, input_layer, _ScaleGrad.apply(a_t), h0, eps, gated, keep)


def _model_output(kernel: str) -> torch.Tensor:
    torch.manual_seed(0)
    model = create_model(
        "antisymmetric_gated", input_size=3, output_size=5, hidden=16, eps=0.1, kernel=kernel
    )
    return model(torch.randn(7, 12, 3))


def test_the_real_kernel_passes_its_self_check_on_the_cpu():
    started = time.monotonic()
    assert fused_error(CPU, 16, REAL_FUSED, eager_scan) is None
    assert time.monotonic() - started < 10  # a few seconds in the interpreter at most
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_kernel("fused", CPU, 16) == "fused"
        assert resolve_kernel("fused", "cpu", 20) == "fused"  # odd size: padded columns
        assert choose_scan("fused", torch.zeros(1), 16) is kernels.fused_scan
    assert fused_verified.cache_info().currsize == 2  # one verdict per device and size


@pytest.mark.parametrize(
    ("wrong", "caught"),
    [(_off_by_1e2, ": h ("), (_wrong_grad_of_a, ": dA (")],
    ids=["output", "grad"],
)
def test_a_wrong_kernel_is_warned_about_once_and_eager_is_taken(monkeypatch, wrong, caught):
    monkeypatch.setattr(kernels, "fused_scan", wrong)
    with pytest.warns(RuntimeWarning) as warned:
        assert resolve_kernel("fused", CPU, 16) == "eager"
    (warning,) = warned
    message = str(warning.message)
    assert "\n" not in message and "on cpu at hidden 16" in message, message
    assert message.count(caught) == 1 and "relative error" in message, message
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the verdict stands: no second check, no warning
        assert choose_scan("fused", torch.zeros(1), 16) is eager_scan
        assert resolve_kernel("fused", CPU, 16) == "eager"
        # a model asked for fused runs the eager path, exactly: equal bits by construction,
        # the same seed, ops and shapes in one process
        assert torch.equal(_model_output("fused"), _model_output("eager"))


def test_a_kernel_that_raises_is_warned_about_and_eager_is_taken(monkeypatch):
    def broken(*args):
        raise RuntimeError("out of resources: shared memory\nrequired: 262144")

    monkeypatch.setattr(kernels, "fused_scan", broken)
    with pytest.warns(RuntimeWarning, match="raised RuntimeError: out of resources"):
        assert resolve_kernel("fused", CPU, 16) == "eager"
    assert choose_scan("fused", torch.zeros(1), 16) is eager_scan


def test_auto_on_the_cpu_is_eager_without_a_check(monkeypatch):
    def never(*args):
        raise AssertionError("auto on the CPU ran the fused kernel")

    monkeypatch.setattr(kernels, "fused_scan", never)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_kernel("auto", CPU, 16) == "eager"
        assert resolve_kernel("eager", CPU, 16) == "eager"
        assert choose_scan("auto", torch.zeros(1), 16) is eager_scan
    assert fused_verified.cache_info().currsize == 0


def test_fused_where_it_cannot_run_is_still_a_usage_error(monkeypatch):
    with pytest.raises(UsageError, match="up to 128 .*got hidden 256"):
        resolve_kernel("fused", CPU, 256)
    with pytest.raises(UsageError, match="kernel must be one of auto, eager, fused"):
        resolve_kernel("fast", CPU, 16)
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(UsageError, match="needs a CUDA device"):
        resolve_kernel("fused", CPU, 16)
    with pytest.raises(UsageError, match="needs a CUDA device"):
        choose_scan("fused", torch.zeros(1), 16)
    assert fused_verified.cache_info().currsize == 0


def test_the_check_runs_inside_inference_mode_and_leaves_the_global_rng_alone():
    """A model's first forward may come in evaluation, under inference mode or no_grad;
    and the check must not change what a seeded run draws next."""
    state = torch.get_rng_state()
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_kernel("fused", CPU, 24) == "fused"
    with torch.no_grad():
        assert choose_scan("fused", torch.zeros(1), 12) is kernels.fused_scan
    assert torch.equal(torch.get_rng_state(), state)  # the generator's bytes: no arithmetic
