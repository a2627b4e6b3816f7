"""What every model shares: the classifier head and Appendix C's initialisation."""

from __future__ import annotations

import math

import torch
from torch import nn


class SequenceClassifier(nn.Module):
    """An encoder that maps x [B, T, m] to its last hidden state, then one linear layer.

    Encoders also expose `states(x, h0)` -> every hidden state [B, T, H], which the
    dynamics analysis differentiates through.
    """

    def __init__(self, encoder: nn.Module, hidden: int, output_size: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(hidden, output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


class LoopEncoder(nn.Module):
    """An encoder whose recurrence is a Python loop over time, written once as `_scan`."""

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
        return self._scan(x, h0, keep_states=False)

    def states(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
        return self._scan(x, h0, keep_states=True)

    def _scan(self, x: torch.Tensor, h0: torch.Tensor | None, keep_states: bool) -> torch.Tensor:
        raise NotImplementedError


def init_input_weight_(weight: torch.Tensor, input_size: int) -> None:
    """Input-to-hidden weights ~ N(0, 1/m)."""
    nn.init.normal_(weight, 0.0, 1.0 / math.sqrt(input_size))


def init_recurrent_weight_(weight: torch.Tensor, hidden: int, sigma_w: float) -> None:
    """Hidden-to-hidden weights ~ N(0, sigma_w^2 / n); sigma_w = 0 gives zeros."""
    if sigma_w == 0:
        nn.init.zeros_(weight)
    else:
        nn.init.normal_(weight, 0.0, sigma_w / math.sqrt(hidden))
