"""Every task: its name, its options schema and where it is built, in one place that
needs no torch, so that a flag or a spec is validated whole before torch loads.

Adding a task: its class and a builder function in a module (`arnn/tasks/<kind>.py`), its
options schema here, and one `register_task` line below naming the builder as
"module:function". Each task's protocol is in docs/tasks.md.
"""

from __future__ import annotations

from typing import Literal

import pydantic

from arnn.tasks._registry import TaskOptions, register_task

# Successors (coRNN, LipschitzRNN) permute with torch.manual_seed(12008); torch.randperm(784).
PMNIST_SEED = 12008


class MnistOptions(TaskOptions):
    pass


class PermutedMnistOptions(TaskOptions):
    perm_seed: int = PMNIST_SEED


class Cifar10Options(TaskOptions):
    pass


class NoisyCifar10Options(TaskOptions):
    # "independent": fresh Gaussian noise for every image (the paper). "fixed": one noise
    # tensor drawn once and padded onto every image (the successors' public code).
    noise: Literal["independent", "fixed"] = "independent"
    noise_seed: int = 0


class SyntheticOptions(TaskOptions):
    train_size: int = pydantic.Field(20_000, ge=1)
    test_size: int = pydantic.Field(2_000, ge=1)
    data_seed: int = 0


class AddingOptions(SyntheticOptions):
    length: int = pydantic.Field(200, ge=2)


class CopyOptions(SyntheticOptions):
    delay: int = pydantic.Field(100, ge=0)
    symbols: int = pydantic.Field(10, ge=1)
    alphabet: int = pydantic.Field(8, ge=2)


register_task(
    "mnist",
    build="images:mnist",
    options=MnistOptions,
    description="pixel-by-pixel MNIST, T=784, m=1",
)
register_task(
    "pmnist",
    build="images:pmnist",
    options=PermutedMnistOptions,
    description="permuted pixel MNIST, T=784, m=1",
)
register_task(
    "cifar10",
    build="images:cifar10",
    options=Cifar10Options,
    description="pixel-by-pixel CIFAR-10, T=1024, m=3",
)
register_task(
    "noisy_cifar10",
    build="images:noisy_cifar10",
    options=NoisyCifar10Options,
    description="noise-padded CIFAR-10: rows, T=1000, m=96",
)
register_task(
    "adding",
    build="synthetic:adding",
    options=AddingOptions,
    description="adding problem (regression)",
)
register_task(
    "copy",
    build="synthetic:copy",
    options=CopyOptions,
    description="copy memory task (K symbols after a delay)",
)
