"""The fused Triton recurrence against float64, relative to torch's own float32 error.

On a CPU these run through TRITON_INTERPRET=1 (conftest sets it) at small shapes; on a
GPU the same tests run compiled, and the `gpu`-marked ones at full shapes.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from arnn.errors import UsageError  # noqa: E402
from arnn.kernels import choose_scan, eager_scan, fused_scan  # noqa: E402
from arnn.kernels.eager import RecurrenceScan  # noqa: E402
from arnn.models import create_model  # noqa: E402

GPU = torch.cuda.is_available()
DEVICE = "cuda" if GPU else "cpu"


def _relative(x: torch.Tensor, reference: torch.Tensor) -> float:
    return ((x.double() - reference).norm() / reference.norm().clamp_min(1e-30)).item()


def _eager(u, a_t, h0, eps, gated, keep):
    """The eager path fed u directly: an identity input projection, no bias."""
    width = u.shape[-1]
    identity = torch.eye(width, dtype=u.dtype, device=u.device)
    zero = torch.zeros(width, dtype=u.dtype, device=u.device)
    return RecurrenceScan.apply(u, identity, zero, a_t, h0, eps, gated, keep)


def _fused(u, a_t, h0, eps, gated, keep):
    from arnn.kernels.triton_scan import FusedScan

    return FusedScan.apply(u, a_t, h0, eps, gated, keep)


def _outputs_and_grads(scan, u, a_t, h0, eps, gated, keep, weights):
    u, a_t, h0 = (t.detach().requires_grad_() for t in (u, a_t, h0))
    out = scan(u, a_t, h0, eps, gated, keep)
    grads = torch.autograd.grad((out * weights.to(out.dtype)).sum(), (u, a_t, h0))
    return (out, *grads)


def _check(batch, steps, hidden, eps, gamma, sigma_w, gated, keep=False, seed=0):
    torch.manual_seed(seed)
    width = 2 if gated else 1
    u = torch.randn(batch, steps, width * hidden, device=DEVICE)
    w = torch.randn(hidden, hidden, device=DEVICE) * sigma_w / hidden**0.5
    a_t = (w - w.T - gamma * torch.eye(hidden, device=DEVICE)).T.contiguous()
    h0 = 0.1 * torch.randn(batch, hidden, device=DEVICE)
    shape = (batch, steps, hidden) if keep else (batch, hidden)
    weights = torch.randn(shape, device=DEVICE)
    inputs = (u, a_t, h0, eps, gated, keep, weights)
    reference = _outputs_and_grads(_eager, *(t.double() for t in inputs[:3]), *inputs[3:])
    eager = _outputs_and_grads(_eager, *inputs)
    fused = _outputs_and_grads(_fused, *inputs)
    for name, e, f, r in zip(("h", "du", "dA", "dh0"), eager, fused, reference, strict=True):
        assert torch.isfinite(f).all(), name
        eager_error = _relative(e, r)
        if eager_error > 1e-2:  # chaotic: rounding alone decides; finite is all one can ask
            continue
        bound = max(1e-5, 4 * eager_error)
        assert _relative(f, r) <= bound, (name, _relative(f, r), eager_error)


@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("hidden", [32, 64])
@pytest.mark.parametrize(("eps", "gamma"), [(0.01, 0.01), (0.1, 0.1), (1.0, 1.0), (1.0, 0.001)])
def test_fused_matches_float64_as_closely_as_eager_float32(gated, hidden, eps, gamma):
    _check(batch=20, steps=24, hidden=hidden, eps=eps, gamma=gamma, sigma_w=1.0, gated=gated)


@pytest.mark.parametrize("gated", [False, True])
def test_fused_every_state_output_and_odd_sizes(gated):
    _check(batch=7, steps=10, hidden=20, eps=0.1, gamma=0.01, sigma_w=2.0, gated=gated, keep=True)


def test_fused_over_a_long_sequence():
    _check(batch=17, steps=256, hidden=32, eps=0.01, gamma=0.01, sigma_w=1.0, gated=True)


def test_far_end_of_the_grid_stays_finite():
    _check(batch=16, steps=128, hidden=32, eps=1.0, gamma=0.0001, sigma_w=8.0, gated=False)


@pytest.mark.parametrize("name", ["antisymmetric", "antisymmetric_gated", "ablation"])
def test_models_take_the_fused_kernel_on_request(name):
    torch.manual_seed(0)
    x = torch.randn(18, 12, 3, device=DEVICE)
    grads = []
    for kernel in ("eager", "fused"):
        torch.manual_seed(0)
        model = create_model(
            name, input_size=3, output_size=5, hidden=16, eps=0.1, kernel=kernel
        ).to(DEVICE)
        model(x).square().sum().backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    for key in grads[0]:
        torch.testing.assert_close(grads[1][key], grads[0][key], rtol=1e-4, atol=1e-5)


def test_auto_takes_eager_on_the_cpu_and_fused_on_cuda_where_it_fits():
    cpu = torch.zeros(1)
    assert choose_scan("auto", cpu, 128) is eager_scan
    assert choose_scan("eager", cpu, 128) is eager_scan
    assert choose_scan("fused", cpu, 128) is fused_scan  # under the interpreter here
    with pytest.raises(UsageError, match="up to 128 .*got hidden 256"):
        choose_scan("fused", cpu, 256)
    if GPU:
        assert choose_scan("auto", cpu.cuda(), 128) is fused_scan
        assert choose_scan("auto", cpu.cuda(), 256) is eager_scan
        assert choose_scan("auto", cpu.cuda().double(), 128) is eager_scan


@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason="needs a CUDA device")
@pytest.mark.parametrize("hidden", [32, 64, 128])  # the limit: arnn.kernels.FUSED_MAX_HIDDEN
@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize(("eps", "gamma"), [(0.01, 0.01), (0.1, 0.001), (1.0, 0.001)])
def test_full_shapes_on_the_gpu(hidden, gated, eps, gamma):
    _check(batch=130, steps=1024, hidden=hidden, eps=eps, gamma=gamma, sigma_w=1.0, gated=gated)
