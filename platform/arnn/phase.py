"""The 2-D systems of the paper's Figure 1: why residual steps with an antisymmetric
matrix (and a little diffusion) neither explode nor vanish.

Panels (a)-(d), vanilla RNN h_t = tanh(W h_{t-1}); panels (e)-(h), residual
h_t = h_{t-1} + eps tanh(W h_{t-1}); no input, no bias, T = 50, eps = 0.1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STEPS = 50
EPS = 0.1
INITIAL_STATES = np.array([[0.0, 0.5], [-0.5, -0.5], [0.5, -0.75]])
W_PLUS = np.array([[2.0, -2.0], [0.0, 2.0]])
W_MINUS = np.array([[-2.0, 2.0], [0.0, -2.0]])
W_ZERO = np.array([[0.0, -2.0], [2.0, 0.0]])  # eigenvalues +-2i: forward Euler spirals out
W_DIFF = W_ZERO - 0.15 * np.eye(2)  # diffusion pulls the eigenvalues into the left half-plane


@dataclass(frozen=True)
class Panel:
    label: str
    title: str
    weight: np.ndarray
    residual: bool


def random_orthogonal(seed: int, determinant: int) -> np.ndarray:
    """A random 2x2 orthogonal matrix with the given determinant (-1 reflection, +1 rotation)."""
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((2, 2)))
    q = q * np.sign(np.diag(r))
    if round(np.linalg.det(q)) != determinant:
        q[:, 0] = -q[:, 0]
    return q


def panels() -> list[Panel]:
    return [
        Panel("a", "vanilla, W ~ N(0, 1)", np.random.default_rng(0).standard_normal((2, 2)), False),
        Panel("b", "vanilla, W = I", np.eye(2), False),
        Panel("c", "vanilla, orthogonal (reflection)", random_orthogonal(0, -1), False),
        Panel("d", "vanilla, orthogonal (rotation)", random_orthogonal(1, +1), False),
        Panel("e", "residual, W+ (diverges)", W_PLUS, True),
        Panel("f", "residual, W- (contracts)", W_MINUS, True),
        Panel("g", "residual, W0 = -W0^T (spirals out)", W_ZERO, True),
        Panel("h", "residual, Wdiff = W0 - 0.15 I", W_DIFF, True),
    ]


def trajectory(
    weight: np.ndarray, start: np.ndarray, residual: bool, steps: int = STEPS, eps: float = EPS
) -> np.ndarray:
    """States h_0 .. h_T as a [T + 1, 2] array."""
    states = [np.asarray(start, dtype=float)]
    for _ in range(steps):
        h = states[-1]
        states.append(h + eps * np.tanh(weight @ h) if residual else np.tanh(weight @ h))
    return np.stack(states)


def draw(path) -> None:
    """All eight panels in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 4, figsize=(14, 7))
    for axis, panel in zip(axes.flat, panels(), strict=True):
        for start in INITIAL_STATES:
            states = trajectory(panel.weight, start, panel.residual)
            axis.plot(states[:, 0], states[:, 1], ".-", markersize=3, linewidth=0.8)
            axis.plot(*start, "ko", markersize=4)
        axis.set_title(f"({panel.label}) {panel.title}", fontsize=9)
        axis.set_aspect("equal", adjustable="datalim")
        axis.axhline(0, color="0.85", linewidth=0.5)
        axis.axvline(0, color="0.85", linewidth=0.5)
    figure.suptitle(f"2-D dynamics, no input, T = {STEPS}, eps = {EPS} (after Figure 1)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
