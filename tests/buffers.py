"""The check every scan that keeps its buffers in a `Workspace` passes: a model that has
run other batches gives the bits a fresh copy of it gives."""

from __future__ import annotations

import copy

import torch


def assert_kept_buffers_change_nothing(model, x, other):
    """`model` (float64, in eval mode, so no dropout draws) after: an evaluation under
    inference mode at x's shape first (its buffers are then trained in), a batch of another
    length with every state kept, forwards without backward; and two batches of x's shape
    in flight at once (the second forward before the first backward)."""
    fresh = copy.deepcopy(model)
    assert fresh.encoder.workspace is not model.encoder.workspace
    with torch.inference_mode():
        model(x)
    expected_out, expected = model(x).detach(), grads(fresh, fresh(x).sin().sum())

    model.encoder.states(other).sum().backward()
    model(other).sum().backward()
    with torch.no_grad():
        model(x)
    with torch.inference_mode():
        model(x)
    model(other)
    # Equal bits, here and below, by construction: the same ops on the same shapes in the
    # same order, in one process (so the same threads); the kept buffers change only where
    # the numbers are written, and every buffer, kept or fresh, is a whole 64-byte-aligned
    # allocation (the workspace hands one back only at the exact shape), its views at
    # offsets the shapes fix.
    assert torch.equal(model(x), expected_out)
    again = grads(model, model(x).sin().sum())
    assert all(torch.equal(again[name], expected[name]) for name in expected)

    x2 = torch.randn_like(x)
    expected_x2 = grads(fresh, fresh(x2).cos().sum())
    model.zero_grad()
    first, second = model(x).sin().sum(), model(x2).cos().sum()  # both hold buffers
    first.backward()
    second.backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[name] + expected_x2[name], msg=name)


def grads(model, loss) -> dict[str, torch.Tensor]:
    model.zero_grad()
    loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}
