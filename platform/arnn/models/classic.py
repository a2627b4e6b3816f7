"""Baselines on torch's own (cuDNN on GPU) recurrent modules: tanh RNN, GRU, LSTM."""

from __future__ import annotations

import torch
from torch import nn

from arnn.models._layers import SequenceClassifier, init_input_weight_, init_recurrent_weight_


class TorchRNNEncoder(nn.Module):
    """One layer of nn.RNN / nn.GRU / nn.LSTM, initialised as in Appendix C."""

    def __init__(self, module: nn.RNNBase, input_size: int, hidden: int, sigma_w: float):
        super().__init__()
        self.rnn = module
        self.hidden = hidden
        init_input_weight_(module.weight_ih_l0, input_size)
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


def _classifier(module_class, *, input_size, output_size, hidden, options, **kwargs):
    sigma_w = options.sigma_w
    module = module_class(input_size, hidden, batch_first=True, **kwargs)
    return SequenceClassifier(
        TorchRNNEncoder(module, input_size, hidden, sigma_w), hidden, output_size
    )


def rnn(*, input_size, output_size, hidden, options):
    return _classifier(
        nn.RNN,
        input_size=input_size,
        output_size=output_size,
        hidden=hidden,
        options=options,
        nonlinearity="tanh",
    )


def gru(*, input_size, output_size, hidden, options):
    return _classifier(
        nn.GRU, input_size=input_size, output_size=output_size, hidden=hidden, options=options
    )


def lstm(*, input_size, output_size, hidden, options):
    return _classifier(
        nn.LSTM, input_size=input_size, output_size=output_size, hidden=hidden, options=options
    )
