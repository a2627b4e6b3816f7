"""Baselines on torch's own (cuDNN on GPU) recurrent modules: the tanh and ReLU RNNs, GRU,
LSTM.

The two plain RNNs, h_t = φ(W h_{t-1} + V x_t + b) with φ = tanh (`rnn`) or ReLU
(`relu_rnn`), take `init`, the recurrent weight W at the start:

- default: Appendix C, every entry of W ~ N(0, σ_w²/n);
- identity: W = σ_w·I (with ReLU and σ_w = 1, the IRNN of Le, Jaitly & Hinton 2015);
- orthogonal: W = σ_w·Q, Q a random orthogonal matrix (Saxe, McClelland & Ganguli 2014),
  drawn by torch.nn.init.orthogonal_ from torch's generator, so the run's seed fixes it.

Input weights ~ N(0, 1/m) and both biases 0 in every case (docs/models.md).
"""

from __future__ import annotations

import torch
from torch import nn

from arnn.models._layers import SequenceClassifier, init_input_weight_, init_recurrent_weight_


def init_plain_recurrent_weight_(weight: torch.Tensor, hidden: int, sigma_w: float, init: str):
    """A plain RNN's W [n, n] as `init` says (the module docstring), scaled by σ_w."""
    if init == "default":
        init_recurrent_weight_(weight, hidden, sigma_w)
    elif init == "identity":
        with torch.no_grad():
            nn.init.eye_(weight)
            weight.mul_(sigma_w)  # exact: 1·σ_w and 0·σ_w
    elif init == "orthogonal":
        nn.init.orthogonal_(weight, gain=sigma_w)
    else:  # the options schema allows only the three above
        raise ValueError(f"unknown recurrent init {init!r}")


class TorchRNNEncoder(nn.Module):
    """One layer of nn.RNN / nn.GRU / nn.LSTM, initialised as in Appendix C (a plain RNN's
    recurrent weight as `init` says)."""

    def __init__(
        self,
        module: nn.RNNBase,
        input_size: int,
        hidden: int,
        sigma_w: float,
        init: str = "default",
    ):
        super().__init__()
        self.rnn = module
        self.hidden = hidden
        init_input_weight_(module.weight_ih_l0, input_size)
        if isinstance(module, nn.RNN):
            init_plain_recurrent_weight_(module.weight_hh_l0, hidden, sigma_w, init)
        else:
            init_recurrent_weight_(module.weight_hh_l0, hidden, sigma_w)
        nn.init.zeros_(module.bias_ih_l0)
        nn.init.zeros_(module.bias_hh_l0)
        if isinstance(module, nn.LSTM):
            # Gates are stacked (input, forget, cell, output); torch keeps two bias
            # vectors, so the forget-gate bias of 1 goes into one of them.
            with torch.no_grad():
                module.bias_ih_l0[hidden : 2 * hidden] = 1.0

    def states(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
        if h0 is not None:
            h0 = h0.unsqueeze(0)
            if isinstance(self.rnn, nn.LSTM):
                h0 = (h0, torch.zeros_like(h0))
        out, _ = self.rnn(x, h0)
        return out

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
        return self.states(x, h0)[:, -1]


def _plain_rnn(nonlinearity, *, input_size, output_size, hidden, options):
    module = nn.RNN(input_size, hidden, batch_first=True, nonlinearity=nonlinearity)
    encoder = TorchRNNEncoder(module, input_size, hidden, options.sigma_w, options.init)
    return SequenceClassifier(encoder, hidden, output_size)


# The builders: each takes input_size, output_size, hidden and options, by keyword.
def rnn(**shape):
    return _plain_rnn("tanh", **shape)


def relu_rnn(**shape):
    return _plain_rnn("relu", **shape)


def gru(**shape):
    return _gated(nn.GRU, **shape)


def lstm(**shape):
    return _gated(nn.LSTM, **shape)


def _gated(module_class, *, input_size, output_size, hidden, options):
    module = module_class(input_size, hidden, batch_first=True)
    encoder = TorchRNNEncoder(module, input_size, hidden, options.sigma_w)
    return SequenceClassifier(encoder, hidden, output_size)
