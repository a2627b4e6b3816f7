"""A scratch model for tests/models/test_adding_a_model.py: the one file a new model is
(its network and its builder), registered there with one line."""

from __future__ import annotations

import torch
from torch import nn

from arnn.models._layers import LoopEncoder, SequenceClassifier


class LeakyEncoder(LoopEncoder):
    """h_t = (1 - leak) h_{t-1} + leak tanh(W h_{t-1} + V x_t + b)."""

    def __init__(self, input_size: int, hidden: int, leak: float):
        super().__init__()
        self.hidden, self.leak = hidden, leak
        self.input = nn.Linear(input_size, hidden)
        self.recurrent = nn.Linear(hidden, hidden, bias=False)

    def _scan(self, x: torch.Tensor, h0: torch.Tensor | None, keep_states: bool) -> torch.Tensor:
        h = x.new_zeros(x.shape[0], self.hidden) if h0 is None else h0
        u, states = self.input(x), []
        for t in range(x.shape[1]):
            h = (1 - self.leak) * h + self.leak * torch.tanh(self.recurrent(h) + u[:, t])
            states.append(h)
        return torch.stack(states, dim=1) if keep_states else h


def build(*, input_size, output_size, hidden, options):
    return SequenceClassifier(LeakyEncoder(input_size, hidden, options.leak), hidden, output_size)
