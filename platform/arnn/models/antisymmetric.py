"""AntisymmetricRNN (Chang et al., ICLR 2019), Eq. 12 and 13, and the paper's ablation.

    A   = W - W^T - gamma I
    h_t = h_{t-1} + eps * tanh(A h_{t-1} + V_h x_t + b_h)                       (Eq. 12)
    z_t = sigmoid(A h_{t-1} + V_z x_t + b_z)
    h_t = h_{t-1} + eps * z_t * tanh(A h_{t-1} + V_h x_t + b_h)                 (Eq. 13)

W is stored as its n(n-1)/2 strictly upper-triangular entries, which is what makes the
paper's parameter counts add up. The ablation model is the gated cell with an
unstructured n x n matrix in place of W - W^T (A = W - gamma I).
"""

from __future__ import annotations

import torch
from torch import nn

from arnn.kernels import choose_scan
from arnn.kernels.schemes import scheme_scan
from arnn.kernels.workspace import Workspace
from arnn.models._layers import (
    LoopEncoder,
    SequenceClassifier,
    init_input_weight_,
    init_recurrent_weight_,
)
from arnn.models.catalog import AntisymmetricOptions


class AntisymmetricEncoder(LoopEncoder):
    def __init__(
        self,
        input_size: int,
        hidden: int,
        *,
        eps: float,
        gamma: float,
        sigma_w: float,
        gated: bool,
        structured: bool = True,
        kernel: str = "auto",
        scheme: str = "euler",
    ):
        super().__init__()
        self.hidden = hidden
        self.eps = eps
        self.gamma = gamma
        self.gated = gated
        self.structured = structured
        self.kernel = kernel  # auto, eager or fused: see arnn.kernels.choose_scan
        self.scheme = scheme  # euler (the paper), midpoint, rk4, leapfrog: arnn.kernels.schemes
        self.workspace = Workspace()  # the other schemes' buffers, kept from batch to batch
        # Rows [0, H) are V_h, b_h; rows [H, 2H) are V_z, b_z for the gated cell.
        self.input = nn.Linear(input_size, hidden * (2 if gated else 1))
        init_input_weight_(self.input.weight, input_size)
        nn.init.zeros_(self.input.bias)
        if structured:
            rows, cols = torch.triu_indices(hidden, hidden, offset=1)
            self.register_buffer("_rows", rows, persistent=False)
            self.register_buffer("_cols", cols, persistent=False)
            self.weight = nn.Parameter(torch.empty(hidden * (hidden - 1) // 2))
        else:
            self.weight = nn.Parameter(torch.empty(hidden, hidden))
        init_recurrent_weight_(self.weight, hidden, sigma_w)

    def full_weight(self) -> torch.Tensor:
        """W as an n x n matrix (strictly upper-triangular when structured)."""
        if not self.structured:
            return self.weight
        w = self.weight.new_zeros(self.hidden, self.hidden)
        return w.index_put((self._rows, self._cols), self.weight)

    def recurrence_matrix(self) -> torch.Tensor:
        """A = W - W^T - gamma I (structured) or W - gamma I (ablation)."""
        w = self.full_weight()
        a = w - w.T if self.structured else w
        return a - self.gamma * torch.eye(self.hidden, dtype=w.dtype, device=w.device)

    def _scan(self, x: torch.Tensor, h0: torch.Tensor | None, keep_states: bool) -> torch.Tensor:
        # A is built once per forward; the recurrence, with the input projection of every
        # step as one matmul before its loop, is arnn.kernels' eager path or, on a GPU,
        # the fused Triton kernel.
        a_t = self.recurrence_matrix().T.contiguous()
        if h0 is None:
            h0 = x.new_zeros(x.shape[0], self.hidden)
        if self.scheme != "euler":  # the other integrators have an eager path only
            return scheme_scan(
                x,
                self.input,
                a_t,
                h0,
                self.eps,
                self.gated,
                keep_states,
                self.scheme,
                workspace=self.workspace,
            )
        scan = choose_scan(self.kernel, x, self.hidden)
        return scan(x, self.input, a_t, h0, self.eps, self.gated, keep_states)


def _classifier(
    input_size, output_size, hidden, options: AntisymmetricOptions, kernel: str, **shape
) -> SequenceClassifier:
    encoder = AntisymmetricEncoder(
        input_size, hidden, kernel=kernel, **options.model_dump(), **shape
    )
    return SequenceClassifier(encoder, hidden, output_size)


def antisymmetric(*, input_size, output_size, hidden, options, kernel):
    return _classifier(input_size, output_size, hidden, options, kernel, gated=False)


def antisymmetric_gated(*, input_size, output_size, hidden, options, kernel):
    return _classifier(input_size, output_size, hidden, options, kernel, gated=True)


def ablation(*, input_size, output_size, hidden, options, kernel):
    return _classifier(
        input_size, output_size, hidden, options, kernel, gated=True, structured=False
    )
