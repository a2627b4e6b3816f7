"""FastRNN (Kusupati et al., NeurIPS 2018): a residual tanh cell with two trainable scalars.

h~_t = tanh(W x_t + U h_{t-1} + b)
h_t  = sigmoid(alpha) * h~_t + sigmoid(beta) * h_{t-1}
"""

from __future__ import annotations

import torch
from torch import nn

from arnn.models._layers import (
    LoopEncoder,
    SequenceClassifier,
    init_input_weight_,
    init_recurrent_weight_,
)

# The authors' initial values: sigmoid(-3) ~ 0.05 of the update, sigmoid(3) ~ 0.95 of the state.
ALPHA_INIT = -3.0
BETA_INIT = 3.0


class FastRNNEncoder(LoopEncoder):
    def __init__(self, input_size: int, hidden: int, *, sigma_w: float):
        super().__init__()
        self.hidden = hidden
        self.input = nn.Linear(input_size, hidden)  # W, b
        self.recurrent = nn.Parameter(torch.empty(hidden, hidden))  # U
        self.alpha = nn.Parameter(torch.tensor(ALPHA_INIT))
        self.beta = nn.Parameter(torch.tensor(BETA_INIT))
        init_input_weight_(self.input.weight, input_size)
        nn.init.zeros_(self.input.bias)
        init_recurrent_weight_(self.recurrent, hidden, sigma_w)

    def _scan(self, x: torch.Tensor, h0: torch.Tensor | None, keep_states: bool) -> torch.Tensor:
        u_transposed = self.recurrent.T.contiguous()
        u = self.input(x)
        alpha, beta = torch.sigmoid(self.alpha), torch.sigmoid(self.beta)
        h = x.new_zeros(x.shape[0], self.hidden) if h0 is None else h0
        kept = []
        for u_t in u.unbind(1):
            h = alpha * torch.tanh(torch.addmm(u_t, h, u_transposed)) + beta * h
            if keep_states:
                kept.append(h)
        return torch.stack(kept, dim=1) if keep_states else h


def fastrnn(*, input_size, output_size, hidden, options):
    encoder = FastRNNEncoder(input_size, hidden, sigma_w=options.sigma_w)
    return SequenceClassifier(encoder, hidden, output_size)
