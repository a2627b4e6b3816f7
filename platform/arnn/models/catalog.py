"""Every model: its name, its options schema and where its network is built, in one place
that needs no torch, so that a flag or a spec is validated whole before torch loads.

Adding a model: its network and a builder function in a module of its own
(`arnn/models/<family>.py`), its options schema here (or `InitOptions`, Appendix C's σ_w
alone), and one `register_model` line below that names the builder as "module:function".
The equations each model computes are in its module's docstring and in docs/models.md.
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic

from arnn.models._registry import InitOptions, ModelOptions, register_model


class AntisymmetricOptions(ModelOptions):
    """The paper's constants: step size, diffusion and the recurrent initialisation."""

    eps: float = pydantic.Field(0.01, gt=0, description="step size epsilon")
    gamma: float = pydantic.Field(0.01, ge=0, description="diffusion gamma")
    sigma_w: float = pydantic.Field(
        1.0, ge=0, description="std of the recurrent weights is sigma_w / sqrt(n)"
    )
    scheme: Literal["euler", "midpoint", "rk4", "leapfrog"] = pydantic.Field(
        "euler",
        description="integrator of h' = tanh(A h + V x + b), input held over a step: euler "
        "(the paper), midpoint (RK2), rk4, or leapfrog (h_t = h_{t-2} + 2 eps f(h_{t-1}))",
    )


class PlainRNNOptions(InitOptions):
    """The plain (tanh, ReLU) RNNs: Appendix C's σ_w and where their recurrent W starts."""

    sigma_w: float = pydantic.Field(
        1.0,
        ge=0,
        description="scale of the recurrent weights: std sigma_w / sqrt(n) (init=default), "
        "W = sigma_w I (identity), W = sigma_w Q (orthogonal)",
    )
    init: Literal["default", "identity", "orthogonal"] = pydantic.Field(
        "default",
        description="the recurrent W at the start: default (N(0, sigma_w^2/n), Appendix C), "
        "identity (the IRNN of Le et al. 2015 with relu_rnn) or orthogonal (a random "
        "orthogonal Q drawn from the run's seed, Saxe et al. 2014)",
    )


class CoRNNOptions(ModelOptions):
    dt: float = pydantic.Field(0.042, gt=0, description="time step dt of the oscillators")
    gamma: float = pydantic.Field(
        2.7, ge=0, description="γ, the restoring force on y (the oscillators' stiffness)"
    )
    eps: float = pydantic.Field(4.7, ge=0, description="ε, the damping of z")
    imex: bool = pydantic.Field(
        False,
        description=(
            "false: explicit damping, as the official code (the published numbers); "
            "true: the paper's implicit damping, z_t = (z + dt(σ(...) - γ y)) / (1 + dt ε)"
        ),
    )


class LEMOptions(ModelOptions):
    dt: float = pydantic.Field(
        0.21, gt=0, description="the largest step size: Δ, Δ̄ lie in (0, dt) (sMNIST 0.21)"
    )
    two_biases: bool = pydantic.Field(
        False,
        description="two biases per gate as in the PyTorch code (+4n parameters); "
        "default one bias per gate, the paper's equations",
    )


class LipschitzOptions(ModelOptions):
    eps: float = pydantic.Field(0.03, gt=0, description="ε, the integrator's time step")
    beta: float = pydantic.Field(
        0.75, ge=0, le=1, description="β, the weight of the skew-symmetric part of A and W"
    )
    gamma: float = pydantic.Field(0.001, ge=0, description="γ, the diagonal shift -γI of A and W")
    init_std: float = pydantic.Field(
        0.1, gt=0, description="B and C start ~ N(0, (init_std / n)^2)"
    )
    scheme: Literal["euler", "midpoint"] = pydantic.Field(
        "euler", description="the integrator: euler, or midpoint (u_t held over the step)"
    )


class UnICORNNOptions(ModelOptions):
    dt: float = pydantic.Field(
        0.19, gt=0, description="time step; δ = dt·sigmoid(c) (psMNIST 0.19)"
    )
    alpha: float = pydantic.Field(
        30.65, ge=0, description="α, the linear restoring force α y (psMNIST 30.65)"
    )
    layers: int = pydantic.Field(3, ge=1, description="number of stacked oscillator layers")
    dropout: float = pydantic.Field(
        0.1,
        ge=0,
        lt=1,
        description="dropout between layers in training: one mask per (sequence, unit), "
        "shared over time",
    )


def _euler(options: dict[str, Any]) -> bool:
    return options.get("scheme", "euler") == "euler"  # the fused kernels integrate with Euler


_ANTISYMMETRIC = dict(options=AntisymmetricOptions, takes_kernel=True, fusable=_euler)
register_model(
    "antisymmetric",
    build="antisymmetric:antisymmetric",
    description="AntisymmetricRNN, Eq. 12",
    gated_variant="antisymmetric_gated",
    **_ANTISYMMETRIC,
)
register_model(
    "antisymmetric_gated",
    build="antisymmetric:antisymmetric_gated",
    description="AntisymmetricRNN w/ gating, Eq. 13",
    **_ANTISYMMETRIC,
)
register_model(
    "ablation",
    build="antisymmetric:ablation",
    description="gated cell, unstructured W (paper's ablation)",
    **_ANTISYMMETRIC,
)
register_model("fastrnn", build="fastrnn:fastrnn", description="FastRNN (Kusupati et al., 2018)")
register_model(
    "rnn",
    build="classic:rnn",
    description="vanilla tanh RNN (torch nn.RNN)",
    options=PlainRNNOptions,
)
register_model(
    "relu_rnn",
    build="classic:relu_rnn",
    description="ReLU RNN (torch nn.RNN); init=identity: IRNN (Le et al. 2015)",
    options=PlainRNNOptions,
)
register_model("gru", build="classic:gru", description="GRU (torch nn.GRU)")
register_model("lstm", build="classic:lstm", description="LSTM (torch nn.LSTM, two bias vectors)")
register_model(
    "cornn",
    build="cornn:cornn",
    description="coRNN, coupled oscillatory RNN (Rusch & Mishra 2021)",
    options=CoRNNOptions,
)
register_model(
    "lem",
    build="lem:lem",
    description="LEM, long expressive memory (ICLR 2022)",
    options=LEMOptions,
)
register_model(
    "lipschitz",
    build="lipschitz:lipschitz",
    description="Lipschitz RNN (Erichson et al. 2021)",
    options=LipschitzOptions,
)
register_model(
    "unicornn",
    build="unicornn:unicornn",
    description="UnICORNN, stacked undamped oscillators (ICML 2021)",
    options=UnICORNNOptions,
)
