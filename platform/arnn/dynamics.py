"""Dynamics of a trained model: the end-to-end Jacobian dh_T/dh_0 and how the gradient
of the loss reaches back in time, ||dL/dh_t|| over t, on a batch of test sequences."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from arnn.models.classic import TorchRNNEncoder


@dataclass
class Dynamics:
    eigenvalues: torch.Tensor  # complex, [sequences, H]: of dh_T/dh_0, one set per sequence
    gradient_norms: torch.Tensor  # [T]: mean over the batch of ||dL/dh_t||, t = 1 .. T

    def summary(self) -> dict[str, float]:
        moduli = self.eigenvalues.abs()
        norms = self.gradient_norms
        return {
            "jacobian_eig_modulus_mean": moduli.mean().item(),
            "jacobian_eig_modulus_std": moduli.std().item(),
            "jacobian_eig_modulus_max": moduli.max().item(),
            "grad_norm_first_over_last": (norms[0] / norms[-1]).item(),
        }


def _lstm(encoder: nn.Module) -> bool:
    return isinstance(encoder, TorchRNNEncoder) and isinstance(encoder.rnn, nn.LSTM)


def last_state(encoder: nn.Module, x: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """h_T from h_0 (an LSTM's cell state starts at zero)."""
    if _lstm(encoder):
        out, _ = encoder.rnn(x, (h0.unsqueeze(0), torch.zeros_like(h0).unsqueeze(0)))
        return out[:, -1]
    return encoder(x, h0)


def unrolled_states(encoder: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """h_1 .. h_T, each a node of the graph, so that dL/dh_t can be asked for."""
    batch = x.shape[0]
    h = x.new_zeros(batch, encoder.hidden)
    states = []
    if _lstm(encoder):
        cell = h.unsqueeze(0)
        for t in range(x.shape[1]):
            _, (h_n, cell) = encoder.rnn(x[:, t : t + 1], (h.unsqueeze(0), cell))
            h = h_n[0]  # the next step starts from this very node
            states.append(h)
        return states
    for t in range(x.shape[1]):
        h = encoder(x[:, t : t + 1], h)
        states.append(h)
    return states


def end_to_end_jacobian(encoder: nn.Module, sequence: torch.Tensor) -> torch.Tensor:
    """dh_T/dh_0 at h_0 = 0 for one sequence [T, m], as an [H, H] matrix.

    The sequence is repeated H times in one batch; row j of the Jacobian is the gradient
    of h_T[j] in the j-th copy, so one backward pass gives all of it."""
    hidden = encoder.hidden
    x = sequence.unsqueeze(0).expand(hidden, *sequence.shape).contiguous()
    h0 = x.new_zeros(hidden, hidden, requires_grad=True)
    h_t = last_state(encoder, x, h0)
    (jacobian,) = torch.autograd.grad(h_t.diagonal().sum(), h0)
    return jacobian


def analyse(
    model: nn.Module, task, inputs: torch.Tensor, targets: torch.Tensor, jacobians: int = 4
) -> Dynamics:
    """Eigenvalues of dh_T/dh_0 for the first `jacobians` sequences, and ||dL/dh_t||."""
    model.eval()
    encoder = model.encoder
    eigenvalues = torch.stack(
        [
            torch.linalg.eigvals(end_to_end_jacobian(encoder, inputs[i]).double())
            for i in range(min(jacobians, len(inputs)))
        ]
    )
    states = unrolled_states(encoder, inputs)
    loss = task.loss(model.head(states[-1]), targets)
    grads = torch.autograd.grad(loss, states)
    norms = torch.stack([g.norm(dim=-1).mean() for g in grads]).detach()
    return Dynamics(eigenvalues=eigenvalues.detach(), gradient_norms=norms)


def plot(dynamics: dict[str, Dynamics], eigen_path, gradient_path) -> None:
    """Eigenvalues in the complex plane, one panel per labelled model side by side (each
    with the unit circle and its own scale: they can differ by orders of magnitude), and
    ||dL/dh_t|| over t, every model's curve on one log axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(dynamics), figsize=(4.2 * len(dynamics), 4.6), squeeze=False)
    circle = torch.linspace(0, 2 * torch.pi, 200)
    for axis, (label, found) in zip(axes[0], dynamics.items(), strict=True):
        _eigenvalue_panel(axis, label, found.eigenvalues.flatten(), circle)
    figure.suptitle("eigenvalues of ∂h_T/∂h_0 (unit circle in grey)")
    figure.tight_layout()
    figure.savefig(eigen_path, dpi=120)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(7, 4))
    for label, found in dynamics.items():
        steps = range(1, len(found.gradient_norms) + 1)
        axis.semilogy(steps, found.gradient_norms.clamp_min(1e-30), label=label)
    axis.set_xlabel("t")
    axis.set_ylabel("‖∂L/∂h_t‖ (mean over the batch; 0 drawn at 1e-30)")
    axis.set_title("how far back the gradient reaches")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(gradient_path, dpi=120)
    plt.close(figure)


def _eigenvalue_panel(axis, label: str, values: torch.Tensor, circle: torch.Tensor) -> None:
    """One model's eigenvalues with the unit circle, framed to show both."""
    axis.plot(circle.cos(), circle.sin(), color="0.7", linewidth=0.8)
    axis.scatter(values.real, values.imag, s=6, alpha=0.6)
    finite = values[torch.isfinite(values.real) & torch.isfinite(values.imag)]
    largest = finite.abs().max().item() if len(finite) else 0.0
    reach = 1.1 * max(1.0, largest)
    axis.set_xlim(-reach, reach)
    axis.set_ylim(-reach, reach)
    axis.set_aspect("equal")
    axis.set_xlabel("Re λ")
    axis.set_ylabel("Im λ")
    axis.set_title(f"{label}\nmax |λ| = {largest:.3g}", fontsize=8)
